"""The train stage on the tiny XTTS: real coqui GPT losses, LoRA, checkpoints, kill -9 + resume, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO
from train_fixtures import FAST, copy_base, folders, long_clip_dataset, settings, tiny_base, tiny_dataset, write_stats

from xttsflow import checkpoints
from xttsflow.audio import write_wav
from xttsflow.demo import espeak
from xttsflow.errors import XttsflowError
from xttsflow.export import export_run
from xttsflow.train import Trainer, base_fingerprint
from xttsflow.xtts_model import load_xtts


def train_losses(summary: dict) -> list[float]:
    return [entry["loss"] for entry in summary["history"] if "loss" in entry]


def test_lora_overfits_a_handful_of_clips_and_changes_only_adapters(tmp_path):
    s = settings(max_steps=10, learning_rate=1e-2, lora_rank=16, use_tensorboard=True, save_every_n_steps=4)
    trainer = Trainer(s, tiny_base(), **folders(tmp_path, tiny_dataset(4, 1)))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run(progress=False)

    losses = train_losses(summary)
    assert summary["steps"] == 10 and len(losses) == 10
    assert losses[-1] < 0.8 * losses[0], losses  # the real XTTS GPT loss (text + mel CE) falls clearly

    best = checkpoints.load_state(trainer.run_dir / "best_model.pt")["trainable"]
    assert best and all(".lora_A." in name or ".lora_B." in name for name in best)
    assert sum(p.numel() for p in best.values()) == summary["parameters"]["trainable"]
    assert summary["parameters"]["trainable"] < 0.1 * summary["parameters"]["gpt_total"]
    after = trainer.model.state_dict()  # (the export merged the adapters into their layers)
    assert all(torch.equal(before[k], after[k]) for k in before if k in after)  # DVAE, HiFi-GAN, embeddings...
    base_weights = checkpoints.load_state(tiny_base() / "model.pth")["model"]
    merged = checkpoints.load_state(trainer.run_dir / "export" / "model.pth")["model"]
    assert merged.keys() == base_weights.keys()
    differ = {k for k in base_weights if not torch.equal(base_weights[k], merged[k])}
    adapted = re.compile(r"gpt\.gpt\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight")
    assert differ and all(adapted.fullmatch(k) for k in differ), differ

    adapter = json.loads((trainer.run_dir / "lora" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 16 and adapter["fan_in_fan_out"] is True
    assert (trainer.run_dir / "lora" / "adapter_model.safetensors").stat().st_size > 0
    assert {p.name for p in (trainer.run_dir / "export").iterdir()} >= {
        "model.pth", "config.json", "vocab.json", "dvae.pth", "mel_stats.pth", "speakers_xtts.pth"}

    events = tensorboard_events(trainer.log_dir)
    assert {"train/loss", "train/loss_mel_ce", "train/loss_text_ce", "train/lr", "train/grad_norm",
            "train/samples_per_s", "val/loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 11))
    assert [e.step for e in events.Scalars("val/loss")] == [2, 4, 6, 8, 10]  # every epoch (2 batches)


def tensorboard_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"audio": 0, "scalars": 0})
    events.Reload()
    return events


def test_full_finetune_trains_the_gpt_and_nothing_else(tmp_path):
    s = settings(use_lora=False, max_steps=2, learning_rate=1e-4, use_tensorboard=True, eval_audio=True,
                 eval_audio_seconds=0.3, eval_sentences=["One.", "Two."])
    trainer = Trainer(s, tiny_base(), **folders(tmp_path))
    assert trainer.counts["trainable"] == trainer.counts["gpt_total"]
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run(progress=False)
    after = trainer.model.state_dict()
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"gpt"}, changed
    assert not (trainer.run_dir / "lora").exists()
    # best_model.pt is for the export: the GPT's weights without AdamW's moments (2/3 of a full checkpoint)
    best, last = trainer.run_dir / "best_model.pt", checkpoints.periodic(trainer.run_dir)[-1]
    assert "optimizer" not in checkpoints.load_state(best) and "optimizer" in checkpoints.load_state(last)
    assert best.stat().st_size < 0.5 * last.stat().st_size
    audio = tensorboard_events(trainer.log_dir).Audio("eval/sample_1")  # a synthesized sample per validation
    assert [a.step for a in audio] == [2] and audio[0].sample_rate == 24000 and audio[0].length_frames > 0


RESUMED = {"max_steps": 10, "save_every_n_steps": 2, "learning_rate": 1e-3, "lora_dropout": 0.1}


def _train_cli(tmp: Path) -> list[str]:
    sets = {**FAST, **RESUMED}  # (run from `tmp`: checkpoints/ and runs/ go there)
    return [sys.executable, "-m", "xttsflow.train", "--base", str(tiny_base()), "--dataset", str(tiny_dataset(8, 1)),
            "--threads", "1", "--no-progress", *[f"--set={k}={v}" for k, v in sets.items()]]


def test_kill_9_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    run_dir = tmp_path / "checkpoints" / "main"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "first.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(_train_cli(tmp_path), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr)
    deadline = time.monotonic() + 300
    while not any(checkpoints.PERIODIC.match(p.name) and int(p.name[11:19]) >= 4 for p in run_dir.glob("*.pt")):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(checkpoints.load_state(p)["step"] for p in checkpoints.periodic(run_dir))
    assert 4 <= killed_at < 10
    for path in [*checkpoints.periodic(run_dir), *run_dir.glob("best_model.pt")]:
        checkpoints.load_state(path)  # every checkpoint on disk is whole (weights_only load)

    resumed = subprocess.run(_train_cli(tmp_path), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {killed_at}" in resumed.stderr
    first_logged = json.loads((run_dir / "train_summary.json").read_text())["history"]
    assert json.loads((run_dir / "train_summary.json").read_text())["steps"] == 10
    assert [e["step"] for e in first_logged if "loss" in e] == list(range(1, 11))  # the counter continued

    torch.set_num_threads(1)  # the same arithmetic as the subprocesses
    try:
        reference = Trainer(settings(**RESUMED), tiny_base(), **folders(tmp_path / "uninterrupted", tiny_dataset(8, 1)))
        reference.run(progress=False)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    interrupted = checkpoints.load_state(run_dir / "checkpoint_00000010.pt")
    straight = checkpoints.load_state(reference.run_dir / "checkpoint_00000010.pt")
    assert interrupted["step"] == straight["step"] == 10
    for name, value in straight["trainable"].items():  # data order, dropout RNG and optimizer all resumed exactly
        torch.testing.assert_close(interrupted["trainable"][name], value, rtol=0, atol=1e-6)

    again = export_run(tiny_base(), run_dir, tmp_path / "last-export", "last")  # python -m xttsflow.export
    assert json.loads((again / "xttsflow.json").read_text())["exported_step"] == 10
    assert load_xtts(again).speaker_manager.speaker_names == ["tiny"]


def test_resume_keeps_the_tensorboard_points_of_the_resume_step(tmp_path):
    """A resumed run (here: max_steps raised after a finished run) keeps every logged step, the resume step too."""
    from xttsflow.report import read_scalars

    Trainer(settings(max_steps=2, use_tensorboard=True), tiny_base(), **folders(tmp_path)).run(progress=False)
    Trainer(settings(max_steps=4, use_tensorboard=True), tiny_base(), **folders(tmp_path)).run(progress=False)
    log_dir = folders(tmp_path)["log_dir"]
    assert [step for step, _ in read_scalars(log_dir)["train/loss"]] == [1, 2, 3, 4]
    assert [step for step, _ in read_scalars(log_dir)["val/loss"]] == [2, 4]


def test_a_changed_setting_starts_over_instead_of_resuming(tmp_path):
    Trainer(settings(max_steps=2), tiny_base(), **folders(tmp_path)).run(progress=False)
    other = Trainer(settings(max_steps=2, lora_rank=4, grad_accum_steps=2), tiny_base(), **folders(tmp_path))
    other.resume_or_start()
    assert other.step == 0 and not checkpoints.periodic(other.run_dir)  # rank-8 checkpoints are gone
    summary = other.run(progress=False)
    assert summary["epochs"] == 2  # 4 clips, batches of 2, 2 batches per optimizer step: one step per epoch
    # more steps under the same settings continue the run: its checkpoints match the longer run's fingerprint
    longer = settings(max_steps=4, lora_rank=4, grad_accum_steps=2).fingerprint()
    fingerprint = checkpoints.fingerprint_json({**longer, "base": base_fingerprint(tiny_base()), "language": None})
    assert fingerprint == other.fingerprint
    assert checkpoints.latest(other.run_dir, fingerprint)["step"] == 2


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing dataset", "does not exist — build it first"),
        ("empty dataset", "lists no clips"),
        ("clips too long", r"none of the 3 clips .* can be trained on \(3 longer than XTTS's limit of 11\.61 s\)"),
        ("base without dvae.pth", r"is missing dvae\.pth \(discrete VAE"),
        ("truncated model.pth", r"(?s)model\.pth cannot be read as an XTTS checkpoint .*corrupt or truncated"),
        ("garbage model.pth", r"model\.pth is not an XTTS checkpoint"),
    ],
)
def test_bad_input_fails_with_a_clear_error(tmp_path, case, message):
    base, dataset = tiny_base(), tiny_dataset()
    if case == "missing dataset":
        dataset = tmp_path / "nowhere"
    elif case == "empty dataset":
        dataset = tmp_path / "empty"
        dataset.mkdir()
        (dataset / "metadata_train.csv").write_text("")
        (dataset / "metadata_val.csv").write_text("")
        write_stats(dataset)
    elif case == "clips too long":
        dataset = long_clip_dataset(tmp_path / "long")
    else:
        base = copy_base(tmp_path / "base")
        if case == "base without dvae.pth":
            (base / "dvae.pth").unlink()
        elif case == "truncated model.pth":
            data = (base / "model.pth").read_bytes()
            (base / "model.pth").unlink()  # a hard link: replace it, never write through it
            (base / "model.pth").write_bytes(data[: len(data) // 3])
        else:
            (base / "model.pth").unlink()
            (base / "model.pth").write_bytes(b"not a checkpoint\n" * 100)
    with pytest.raises(XttsflowError, match=message):
        Trainer(settings(language=None), base, **folders(tmp_path, dataset))


@pytest.mark.slow
def test_train_rule_builds_the_tiny_base_trains_and_reruns_only_on_a_setting_change(tmp_path):
    from conftest import planned_jobs, snakemake, write_config

    shutil.copytree(tiny_dataset(), tmp_path / "dataset")
    write_wav(tmp_path / "recording.wav", espeak("A recording for the source list."), 22050)
    train = {"base_model": "builtin:tiny", "max_steps": 3, "batch_size": 2, "num_workers": 0, "eval_audio": False}
    config = {"sources": [{"path": "recording.wav", "speaker": "demo", "language": "en"}], "until": "train",
              "train": train}
    write_config(tmp_path, config)
    # only the train stage's rules: the dataset above stands in for the upstream stages
    only_train = ["--allowed-rules", "base_model", "train", "--", "checkpoints/main/export/model.pth"]
    snakemake(tmp_path, "--cores", "2", *only_train)

    summary = json.loads((tmp_path / "checkpoints/main/train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["settings"]["lora_rank"] == 8
    assert {p.name for p in (tmp_path / "models/base").iterdir()} >= {"model.pth", "dvae.pth", "vocab.json"}
    assert (tmp_path / "runs/main").is_dir()
    assert "trainable parameters" in (tmp_path / "logs/train/main.log").read_text()
    assert planned_jobs(tmp_path, *only_train) == {}  # nothing changed: nothing to do
    write_config(tmp_path, {**config, "train": {**train, "lora_rank": 4}})
    assert planned_jobs(tmp_path, *only_train) == {"train": 1}  # a training setting changed: training only
