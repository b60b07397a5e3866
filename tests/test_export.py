"""XTTS checkpoint folders: the tiny builder, coqui's loader, the merged export and the peft adapter."""

from __future__ import annotations

import json
import os

import pytest
import torch
from train_fixtures import copy_base, folders, settings, tiny_base

from xttsflow import train_data
from xttsflow.base_model import prepare_base_model
from xttsflow.errors import XttsflowError
from xttsflow.gpt_model import build_gpt_trainer
from xttsflow.train import Trainer
from xttsflow.xtts_model import XTTS_FILES, build_tiny_checkpoint, export_model, load_xtts, read_config, save_adapter


def test_tiny_checkpoint_has_xtts_layout_and_is_reproducible(tmp_path):
    base = tiny_base()
    assert {p.name for p in base.iterdir()} == set(XTTS_FILES) | {"xttsflow.json"}
    args = read_config(base).model_args
    assert (args.gpt_layers, args.gpt_n_model_channels, args.gpt_use_perceiver_resampler) == (2, 64, True)
    again = build_tiny_checkpoint(tmp_path / "again", seed=0)
    for name in XTTS_FILES:  # same seed, same bytes
        assert (again / name).read_bytes() == (base / name).read_bytes(), name

    model = load_xtts(base)  # coqui's Xtts + load_checkpoint, strict
    tokens = model.tokenizer.encode("the keeper's light: 12 ships, 3 storms!", "en")
    assert 0 not in tokens and 1 not in tokens  # no [STOP] / [UNK]
    assert model.speaker_manager.speaker_names == ["tiny"]


@pytest.mark.parametrize("missing", ["model.pth", "config.json", "vocab.json"])
def test_load_xtts_names_the_missing_file(tmp_path, missing):
    folder = copy_base(tmp_path / "base")
    (folder / missing).unlink()
    with pytest.raises(XttsflowError, match=f"is missing {missing}"):
        load_xtts(folder)


def test_load_xtts_reports_a_corrupt_or_foreign_checkpoint(tmp_path):
    folder = copy_base(tmp_path / "base")
    data = (folder / "model.pth").read_bytes()
    (folder / "model.pth").unlink()  # (a hard link to the shared base: replace, never write through it)
    (folder / "model.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(XttsflowError, match=r"(?s)cannot be loaded .*corrupt, truncated"):
        load_xtts(folder)
    (folder / "model.pth").unlink()
    (folder / "model.pth").write_bytes(data)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"]["gpt_n_model_channels"] = 128  # config.json of another model size
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(XttsflowError, match="belongs to another model/config.json"):
        load_xtts(folder)
    with pytest.raises(XttsflowError, match="does not exist"):
        load_xtts(tmp_path / "nowhere")


def _mel_logits(gpt, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        _, _, logits = gpt(batch["text_inputs"], batch["text_lengths"], batch["audio_codes"].clone(),
                           batch["wav_lengths"], cond_mels=batch["cond_mels"], cond_idxs=None, cond_lens=None)
    return logits


def test_merged_export_reproduces_base_plus_adapter_and_loads_in_coqui(tmp_path):
    from peft import PeftModel
    from TTS.tts.models.xtts import Xtts

    trainer = Trainer(settings(lora_rank=4), tiny_base(), **folders(tmp_path))
    torch.manual_seed(0)
    for name, param in trainer.model.named_parameters():
        if "lora_B" in name:  # as after training: B starts at zero, which would make the test vacuous
            param.data.normal_(0, 0.05)
    val = train_data.loader(trainer.val_set, 2, 0, seed=0, epoch=0)
    batch = trainer.model.format_batch_on_device(next(iter(val)))
    trainer.model.xtts.gpt.eval()
    with_adapter = _mel_logits(trainer.model.xtts.gpt, batch)
    without = _mel_logits(build_gpt_trainer(tiny_base()).xtts.gpt.eval(), batch)
    assert (with_adapter - without).abs().max() > 1e-2  # the adapters do change the output

    save_adapter(trainer.peft, tmp_path / "lora")
    export_model(trainer.model, trainer.peft, tiny_base(), tmp_path / "export", {"test": True})

    # coqui's own loader, called directly, strict: what other XTTS tools do with the folder
    config = read_config(tmp_path / "export")
    coqui = Xtts(config)
    coqui.load_checkpoint(config, checkpoint_dir=str(tmp_path / "export"), eval=True, strict=True)
    torch.testing.assert_close(_mel_logits(coqui.gpt, batch), with_adapter, atol=1e-4, rtol=1e-4)

    # the adapter in peft's format, applied to a fresh base GPT, gives the same outputs too
    fresh = build_gpt_trainer(tiny_base()).xtts.gpt
    adapted = PeftModel.from_pretrained(fresh, str(tmp_path / "lora")).eval()
    torch.testing.assert_close(_mel_logits(adapted.base_model.model, batch), with_adapter, atol=1e-5, rtol=1e-5)

    # and the export speaks: a few codes through the GPT and the HiFi-GAN decoder at 24 kHz
    speaker = coqui.speaker_manager.speakers["tiny"]
    wav = coqui.inference("hello there.", "en", speaker["gpt_cond_latent"], speaker["speaker_embedding"],
                          max_new_tokens=4)["wav"]
    assert wav.ndim == 1 and wav.size > 0


def test_named_base_model_needs_the_users_licence_acceptance(tmp_path, monkeypatch):
    monkeypatch.delenv("COQUI_TOS_AGREED", raising=False)
    with pytest.raises(XttsflowError, match=r"Coqui Public Model License .* set train\.accept_cpml: true"):
        prepare_base_model("tts_models/multilingual/multi-dataset/xtts_v2", tmp_path / "base", accept_cpml=False)
    assert not (tmp_path / "base").exists()
    assert "COQUI_TOS_AGREED" not in os.environ  # never set on the user's behalf


def test_local_base_model_folder_is_checked_and_linked(tmp_path):
    out = prepare_base_model(str(tiny_base()), tmp_path / "base")
    assert all(os.path.samefile(out / name, tiny_base() / name) for name in XTTS_FILES)  # linked, not copied
    broken = copy_base(tmp_path / "broken")
    (broken / "speakers_xtts.pth").unlink()
    with pytest.raises(XttsflowError, match=r"is missing speakers_xtts\.pth"):
        prepare_base_model(str(broken), tmp_path / "base2")


def test_training_export_stores_the_dataset_speaker_as_a_named_voice(tmp_path):
    """The train stage's export: the speaker of the dataset (clips.json) in speakers_xtts.pth, computed with
    the merged model, equal to what inference computes from the same clips with the exported folder."""
    from evalkit import write_dataset
    from train_fixtures import write_stats
    from TTS.tts.layers.xtts.xtts_manager import SpeakerManager

    from xttsflow.inference import Synthesizer

    dataset = write_dataset(tmp_path / "work")
    write_stats(dataset)  # + the coqui dataset entries the trainer loads
    where = folders(tmp_path, dataset=dataset)
    summary = Trainer(settings(max_steps=2, learning_rate=1e-2, lora_rank=4), tiny_base(), **where).run(progress=False)
    export = where["run_dir"] / "export"
    speakers = SpeakerManager(export / "speakers_xtts.pth")
    assert speakers.speaker_names == ["tiny", "demo"]  # the base's voice kept, the dataset's speaker added
    assert (tiny_base() / "speakers_xtts.pth").stat().st_ino != (export / "speakers_xtts.pth").stat().st_ino
    assert SpeakerManager(tiny_base() / "speakers_xtts.pth").speaker_names == ["tiny"]  # the base is untouched
    record = json.loads((export / "xttsflow.json").read_text())["voices"]["demo"]
    assert record["clips"] == ["demo-0a1b2c3d_0002", "demo-0a1b2c3d_0001", "demo-0a1b2c3d_0005"]
    assert summary["steps"] == 2
    voice = Synthesizer(export, device="cpu").voice([dataset / "wavs" / f"{i}.wav" for i in record["clips"]])
    stored = speakers.speakers["demo"]
    torch.testing.assert_close(stored["gpt_cond_latent"], voice.gpt_cond_latent, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stored["speaker_embedding"], voice.speaker_embedding, atol=1e-5, rtol=1e-5)
