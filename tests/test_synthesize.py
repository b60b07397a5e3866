"""Synthesis with real (tiny, random) XTTS checkpoints: sentence streaming, seeds, samples, the CLI, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from evalkit import eval_workdir, tiny_models  # noqa: F401  (fixtures)

from xttsflow import OUTPUT_SAMPLE_RATE
from xttsflow.audio import write_wav
from xttsflow.errors import XttsflowError
from xttsflow.inference import Settings, get_synthesizer, split_sentences, write_wav_chunks
from xttsflow.options import EvaluateConfig
from xttsflow.synthesize import DEFAULT_SENTENCES, evaluation_sentences, synthesize_samples

FAST = Settings(seed=7, max_new_tokens=8)  # a random model never stops by itself: cap each sentence
LONG_TEXT = ("The first sentence is short. The second one asks a question? Dr. Smith answers it! "
             + "A long sentence follows, " + "and it keeps going with more and more words " * 3 + "until it ends.")


def test_split_sentences_keeps_every_word_in_order_within_the_limit():
    pieces = split_sentences(LONG_TEXT, max_chars=60)
    assert " ".join(pieces).split() == LONG_TEXT.split()
    assert all(len(p) <= 60 for p in pieces)
    assert pieces[:3] == ["The first sentence is short.", "The second one asks a question?",
                          "Dr. Smith answers it!"]  # "Dr." alone is joined to what follows
    assert len(pieces) >= 6  # the long sentence is wrapped at word boundaries


@pytest.mark.parametrize(("text", "expected"), [
    # Chinese and Japanese: no space after a full-width stop, and none added when short sentences are joined
    ("是的！今天天气很好。明天也会晴朗。", ["是的！今天天气很好。明天也会晴朗。"]),
    ("今天天气很好，我们去公园散步吧。明天也会晴朗，我们再去。",
     ["今天天气很好，我们去公园散步吧。", "明天也会晴朗，我们再去。"]),
    ("はい。今日はいい天気ですね。", ["はい。今日はいい天気ですね。"]),
    # Hindi's danda and Arabic's question mark end sentences as "." and "?" do
    ("मैं एक छात्र हूँ। क्या आप शिक्षक हैं?", ["मैं एक छात्र हूँ।", "क्या आप शिक्षक हैं?"]),
    ("هل أنت معلم اليوم؟ نعم، أنا معلم.", ["هل أنت معلم اليوم؟", "نعم، أنا معلم."]),
])
def test_split_sentences_in_other_scripts(text, expected):
    assert split_sentences(text, max_chars=24) == expected


def test_settings_out_of_range_names_the_setting():
    with pytest.raises(XttsflowError, match=r"temperature=0\.0 .*\[0\.01, 5\]"):
        Settings(temperature=0.0)
    with pytest.raises(XttsflowError, match="top_p"):
        Settings(top_p=1.5)
    assert Settings.from_config({"seed": 3, "temperature": None, "unrelated": 1}) == Settings(seed=3)


@pytest.fixture(scope="module")
def synthesizer(tiny_models):  # noqa: F811
    return get_synthesizer(tiny_models["base"], device="cpu")


@pytest.fixture(scope="module")
def voice(synthesizer, eval_workdir):  # noqa: F811
    return synthesizer.voice([eval_workdir / "dataset" / "wavs" / "demo-0a1b2c3d_0002.wav"])


def test_one_model_load_per_process(tiny_models, synthesizer):  # noqa: F811
    assert get_synthesizer(tiny_models["base"], device="cpu") is synthesizer


def test_stream_yields_one_chunk_per_sentence_and_seeds_reproduce(synthesizer, voice, tmp_path):
    sentences = synthesizer.sentences(LONG_TEXT, "en")
    chunks = list(synthesizer.stream(LONG_TEXT, "en", voice, FAST))
    assert len(chunks) == len(sentences) > 1
    assert all(c.dtype == np.float32 and 0 < len(c) <= 9 * 1024 * OUTPUT_SAMPLE_RATE / 22050 + 2048 for c in chunks)
    seconds = write_wav_chunks(tmp_path / "long.wav", iter(chunks), synthesizer.sample_rate)
    data, rate = sf.read(tmp_path / "long.wav", dtype="float32")
    assert rate == OUTPUT_SAMPLE_RATE and len(data) == sum(map(len, chunks))
    assert seconds == pytest.approx(len(data) / rate)
    again = synthesizer.synthesize(LONG_TEXT, "en", voice, FAST)
    np.testing.assert_array_equal(again, np.concatenate(chunks))
    first = synthesizer.synthesize(sentences[0], "en", voice, FAST)
    other = synthesizer.synthesize(sentences[0], "en", voice, Settings(seed=8, max_new_tokens=8))
    np.testing.assert_array_equal(first, chunks[0])  # sentence 0 of a text is sampled with the text's seed
    assert not np.array_equal(other[: len(first)], first[: len(other)])


def test_output_is_what_coquis_own_inference_makes(tiny_models, synthesizer, voice):  # noqa: F811
    """Our path (sentence split, seed, folded weight norm) against coqui's Xtts.inference on a fresh load."""
    import torch

    from xttsflow.xtts_model import load_xtts

    coqui = load_xtts(tiny_models["base"], device="cpu")
    torch.manual_seed(FAST.seed)
    kwargs = {k: v for k, v in FAST.resolved(coqui.config).items() if k not in ("seed", "max_new_tokens")}
    expected = coqui.inference("A single sentence.", "en", voice.gpt_cond_latent, voice.speaker_embedding,
                               max_new_tokens=FAST.max_new_tokens, **kwargs)["wav"]
    ours = synthesizer.synthesize("A single sentence.", "en", voice, FAST)
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_bad_input_is_a_clear_error(synthesizer, voice, tmp_path):
    with pytest.raises(XttsflowError, match="language 'xx' is not available.*use one of en"):
        synthesizer.sentences("hello", "xx")
    with pytest.raises(XttsflowError, match="nothing to speak"):
        synthesizer.sentences(" ... !!", "en")
    with pytest.raises(XttsflowError, match="spell out very long numbers"):
        synthesizer.sentences("9" * 200, "ru")
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(22050 * 2, np.float32), 22050)
    with pytest.raises(XttsflowError, match=r"silent\.wav is 2\.00 s long and silent"):
        synthesizer.voice([silent])
    short = tmp_path / "short.wav"
    write_wav(short, 0.3 * np.sin(np.arange(2205, dtype=np.float32)), 22050)
    with pytest.raises(XttsflowError, match=r"0\.10 s long — give at least 0\.5 s"):
        synthesizer.voice([short])
    with pytest.raises(XttsflowError, match="cannot be read"):
        synthesizer.voice([tmp_path / "missing.wav"])
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(XttsflowError, match="FFmpeg could not decode"):
        synthesizer.voice([tmp_path / "text.wav"])


def test_checkpoint_folder_missing_a_file_is_named(tiny_models, tmp_path):  # noqa: F811
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_bytes((tiny_models["base"] / "config.json").read_bytes())
    with pytest.raises(XttsflowError, match=r"missing model\.pth .*vocab\.json"):
        get_synthesizer(folder, device="cpu")


def test_evaluation_sentences_defaults_config_and_unknown_language():
    assert evaluation_sentences(EvaluateConfig(), "pt") == DEFAULT_SENTENCES["pt"]
    assert evaluation_sentences(EvaluateConfig(sentences={"en": ["One.", "Two."]}, num_sentences=1), "en") == ["One."]
    # every XTTS language has built-in sentences now (issue 11): only a language XTTS lacks has none
    with pytest.raises(XttsflowError, match=r"evaluate\.sentences\.sv"):
        evaluation_sentences(EvaluateConfig(), "sv")


def test_samples_record_text_seed_settings_and_reproduce(eval_workdir, tmp_path):  # noqa: F811
    refs = tmp_path / "references.json"
    ref = str(eval_workdir / "dataset" / "wavs" / "demo-0a1b2c3d_0002.wav")
    refs.write_text(json.dumps({"language": "en", "references": [{"file": ref}]}))
    cfg = EvaluateConfig(num_sentences=2, max_new_tokens=6, seed=11)
    runs = []
    for name in ("a", "b"):
        record = synthesize_samples(eval_workdir / "models" / "base" / "model.pth", refs, cfg, tmp_path / name,
                                    tmp_path / f"{name}.json", "base")
        runs.append(record)
        assert json.loads((tmp_path / name / "samples.json").read_text()) == record
    record = runs[0]
    assert [s["file"] for s in record["samples"]] == ["001.wav", "002.wav"]
    assert [s["text"] for s in record["samples"]] == DEFAULT_SENTENCES["en"][:2]
    assert record["settings"]["seed"] == 11 and record["settings"]["temperature"] == 0.85  # the checkpoint's default
    assert record["sample_rate"] == OUTPUT_SAMPLE_RATE and record["references"] == [ref]
    for sample in record["samples"]:
        a, rate = sf.read(tmp_path / "a" / sample["file"])
        b, _ = sf.read(tmp_path / "b" / sample["file"])
        assert rate == OUTPUT_SAMPLE_RATE and len(a) / rate == pytest.approx(sample["duration"], abs=1e-3)
        np.testing.assert_array_equal(a, b)  # same seed, same text, same model: the same audio


def test_cli_speaks_a_long_text_file_to_a_wav(eval_workdir, tmp_path):  # noqa: F811
    text = tmp_path / "chapter.txt"
    text.write_text("Chapter one. It was a dark and stormy night, and the rain fell in torrents.", encoding="utf-8")
    out = tmp_path / "chapter.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "xttsflow.synthesize", "speak",
         "--checkpoint", str(eval_workdir / "checkpoints/main/export"),
         "--reference", str(eval_workdir / "dataset/wavs/demo-0a1b2c3d_0001.wav"),
         "--reference", str(eval_workdir / "dataset/wavs/demo-0a1b2c3d_0002.wav"),
         "--text-file", str(text), "--language", "en", "-o", str(out), "--max-new-tokens", "4", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = sf.info(str(out))
    assert info.samplerate == OUTPUT_SAMPLE_RATE and info.channels == 1 and info.duration > 0.2
    assert "speaking 2 sentence(s)" in proc.stderr and "RTF" in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "xttsflow.cli", "synthesize", "speak", "--checkpoint",
                          str(tmp_path / "nowhere"), "--reference", "x.wav", "--text", "hi",
                          "-o", str(tmp_path / "x.wav")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "does not exist" in bad.stderr and not (tmp_path / "x.wav").exists()
