"""Evaluation: reference choice, the metrics on real speech and real noise, loss curves, the comparison,
and the stage's rules run by Snakemake into an HTML report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import snakemake, write_config
from evalkit import VAL_CLIPS, copy_checkpoint, tiny_models, write_dataset  # noqa: F401  (fixture)

from xttsflow.audio import write_wav
from xttsflow.errors import XttsflowError
from xttsflow.evaluate import (
    choose_references,
    compare,
    error_counts,
    score,
    speech_seconds,
)
from xttsflow.options import EvaluateConfig, parse
from xttsflow.report import training_curves
from xttsflow.sources import local_source_id
from xttsflow.transcribe import TranscribeConfig

TRANSCRIBE = {"backend": "faster-whisper", "model": "bundled:tiny.en", "device": "cpu", "compute_type": "int8"}


def test_error_rates_use_whispers_normaliser():
    exact = error_counts("Mr. Smith isn't here, is he?", "mister smith is not here is he", "en")
    assert exact["word_edits"] == 0 and exact["char_edits"] == 0
    counts = error_counts("the cat sat", "the bat sat down", "en")
    assert (counts["word_edits"], counts["words"]) == (2, 3)  # one substitution, one insertion
    assert (counts["char_edits"], counts["chars"]) == (6, 11)  # c->b, then " down" inserted
    assert error_counts("Où étais-tu ?", "ou etais tu", "fr")["char_edits"] == 2  # accents count outside English


def test_speech_seconds_ignores_leading_and_trailing_silence(tmp_path):
    rate = 24000
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(int(1.5 * rate)) / rate)
    samples = np.concatenate([np.zeros(rate), tone, np.zeros(rate // 2)]).astype(np.float32)
    write_wav(tmp_path / "x.wav", samples, rate)
    assert speech_seconds(tmp_path / "x.wav") == pytest.approx(1.5, abs=0.02)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-dataset")
    write_dataset(root)
    return root


def _refs(root, out, **cfg):
    return choose_references(root / "dataset", [root / "transcripts" / "demo-0a1b2c3d.json"],
                             parse(EvaluateConfig, cfg), out)


def test_references_are_confident_held_out_clips_of_the_right_length(dataset_root, tmp_path):
    refs = _refs(dataset_root, tmp_path / "r.json", num_references=1, reference_min_duration=5.5)
    durations = {c["id"]: c["duration"] for c in refs["references"] + refs["real_clips"]}
    (chosen,) = refs["references"]
    # 0004 is as long but its transcript is unsure (exp(-1.6) = 0.2); 0003 is too short; 0005 is a train clip.
    assert 5.5 <= chosen["duration"] <= 10 and chosen["confidence"] >= 0.5, durations
    assert chosen["id"] in {"demo-0a1b2c3d_0001", "demo-0a1b2c3d_0002"}
    assert {c["id"] for c in refs["real_clips"]} == {c[0] for c in VAL_CLIPS} - {chosen["id"]}
    assert refs["language"] == "en" and refs["held_out"] and not refs["relaxed"] and not refs["warnings"]
    assert refs["speaker_rate"]["chars_per_second"] > 5
    assert json.loads((tmp_path / "r.json").read_text()) == refs


def test_too_few_good_clips_relaxes_with_a_warning(dataset_root, tmp_path):
    refs = _refs(dataset_root, tmp_path / "r.json", num_references=3, reference_min_confidence=0.9)
    assert refs["relaxed"] and "took the closest ones" in refs["warnings"][0]
    assert len(refs["references"]) == 3 and "demo-0a1b2c3d_0005" not in {c["id"] for c in refs["references"]}


def test_a_small_val_split_keeps_one_clip_to_compare_with(dataset_root, tmp_path):
    refs = _refs(dataset_root, tmp_path / "r.json", num_references=5)
    assert len(refs["references"]) == 3 and len(refs["real_clips"]) == 1
    assert "only 4 held-out clips: 3 are references" in refs["warnings"][0]


def test_configured_references_and_their_errors(dataset_root, tmp_path):
    refs = _refs(dataset_root, tmp_path / "r.json", references=["demo-0a1b2c3d_0003"])
    assert [c["id"] for c in refs["references"]] == ["demo-0a1b2c3d_0003"]
    with pytest.raises(XttsflowError, match="'nope.wav' is neither a clip id .* nor an existing audio file"):
        _refs(dataset_root, tmp_path / "bad.json", references=["nope.wav"])
    with pytest.raises(XttsflowError, match="reference_min_duration .* must be smaller"):
        _refs(dataset_root, tmp_path / "bad.json", reference_min_duration=10, reference_max_duration=6)
    with pytest.raises(XttsflowError, match="no clips of speaker 'someone-else'"):
        _refs(dataset_root, tmp_path / "bad.json", speaker="someone-else")
    assert not (tmp_path / "bad.json").exists()


def test_no_val_split_falls_back_to_training_clips_with_a_warning(tmp_path):
    write_dataset(tmp_path, val=[], train=VAL_CLIPS[:2])
    refs = _refs(tmp_path, tmp_path / "r.json", num_references=1)
    assert not refs["held_out"] and "no held-out (val) clips" in refs["warnings"][0]


def test_metrics_tell_real_speech_from_noise(dataset_root, tmp_path):
    """Real Whisper and Resemblyzer on the speaker's clips vs noise that 'says' the same text."""
    refs = _refs(dataset_root, tmp_path / "r.json", num_references=1)
    real = score("real", [{"file": c["file"], "text": c["text"]} for c in refs["real_clips"]], refs,
                 TranscribeConfig(**TRANSCRIBE), tmp_path / "real.json")
    rng = np.random.default_rng(0)
    noise = []
    for i, clip in enumerate(refs["real_clips"]):
        write_wav(tmp_path / f"{i}.wav", 0.1 * rng.standard_normal(24000 * 2).astype(np.float32), 24000)
        noise.append({"file": str(tmp_path / f"{i}.wav"), "text": clip["text"]})
    fake = score("base", noise, refs, TranscribeConfig(**TRANSCRIBE), tmp_path / "noise.json")
    r, n = real["summary"], fake["summary"]
    assert r["wer"] <= 0.35 and r["cer"] <= 0.2, real["samples"]
    assert n["cer"] >= 0.7 and n["wer"] >= 0.8, fake["samples"]
    assert r["speaker_similarity"] >= 0.75 and r["speaker_similarity"] - n["speaker_similarity"] >= 0.15
    assert 0.8 <= r["duration_ratio"] <= 1.25  # the real clips set the pace they are measured against
    assert real["transcriber"]["model"] and json.loads((tmp_path / "real.json").read_text()) == real


def test_loss_curves_from_a_real_tensorboard_log(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "runs" / "main"))
    for step in range(12):
        writer.add_scalar("train/loss_text_ce", 4.0 - 0.2 * step, step)
        writer.add_scalar("train/lr", 1e-4, step)
    for step in (5, 11):
        writer.add_scalar("val/loss", 3.0 - 0.1 * step, step)
    writer.close()
    (tmp_path / "summary.json").write_text(json.dumps({"steps": 12, "best_val_loss": 1.9, "use_lora": True}))
    record = training_curves(tmp_path / "runs" / "main", tmp_path / "loss.png", tmp_path / "training.json",
                             train_summary=tmp_path / "summary.json")
    assert set(record["series"]) == {"train/loss_text_ce", "val/loss"}  # learning rate is not a loss
    assert record["series"]["train/loss_text_ce"] == pytest.approx(
        {"points": 12, "first_step": 0, "last_step": 11, "first": 4.0, "last": 1.8, "min": 1.8})
    assert record["run"]["best_val_loss"] == 1.9
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = training_curves(tmp_path / "nothing", tmp_path / "empty.png", tmp_path / "empty.json")
    assert "no loss scalars" in empty["warning"] and (tmp_path / "empty.png").stat().st_size > 1000


def _scores(model, sims, cers, texts):
    samples = [{"file": f"/x/{model}/{i:03d}.wav", "text": t, "transcript": "", "speaker_similarity": s, "cer": c,
                "wer": c, "duration": 2.0, "duration_ratio": 1.0}
               for i, (s, c, t) in enumerate(zip(sims, cers, texts, strict=True))]
    summary = {"samples": len(samples), "speaker_similarity": float(np.mean(sims)), "cer": float(np.mean(cers)),
               "wer": float(np.mean(cers)), "duration_ratio": 1.1 if model == "base" else 1.02}
    return {"summary": summary, "samples": samples, "transcriber": {"model": "tiny.en"}}


def test_compare_puts_base_and_finetuned_side_by_side():
    texts = ["One.", "Two."]
    scores = {"base": _scores("base", [0.5, 0.6], [0.1, 0.2], texts),
              "finetuned": _scores("finetuned", [0.8, 0.7], [0.1, 0.1], texts),
              "real": _scores("real", [0.9, 0.9], [0.0, 0.0], texts)}
    manifests = {m: {"synthesis_seconds": 2.0, "audio_seconds": 4.0, "settings": {"seed": 1}}
                 for m in ("base", "finetuned")}
    refs = {"language": "en", "references": [{"id": "r", "file": "r.wav", "duration": 7.0}], "real_clips": [{}]}
    metrics = compare(scores, manifests, refs, {"series": {}}, {"clips": 10, "hours": 0.01}, "main")
    assert metrics["delta_finetuned_minus_base"]["speaker_similarity"] == pytest.approx(0.2)
    assert metrics["delta_finetuned_minus_base"]["cer"] == pytest.approx(-0.05)
    assert metrics["verdict"] == {"closer_to_speaker": True, "intelligibility_kept": True,
                                  "pace_closer_to_speaker": True}
    assert metrics["models"]["base"]["rtf"] == 0.5 and "rtf" not in metrics["models"]["real"]
    assert [s["text"] for s in metrics["sentences"]] == texts
    assert metrics["sentences"][1]["finetuned"]["file"] == "/x/finetuned/001.wav"


@pytest.mark.slow
def test_stage_rules_run_in_snakemake_and_fill_the_report(tmp_path, tiny_models):  # noqa: F811
    """The evaluate rules on a workflow folder as training leaves it; then `snakemake --report`."""
    from torch.utils.tensorboard import SummaryWriter

    (tmp_path / "rec").mkdir()
    write_wav(tmp_path / "rec" / "speaker.wav", np.zeros(22050, np.float32), 22050)
    write_dataset(tmp_path, source=local_source_id("rec/speaker.wav"))
    training_curves(tmp_path / "none", tmp_path / "dataset" / "durations.png", tmp_path / "unused.json")  # a PNG
    copy_checkpoint(tiny_models["base"], tmp_path / "models" / "base")
    copy_checkpoint(tiny_models["finetuned"], tmp_path / "checkpoints" / "main" / "export")
    (tmp_path / "checkpoints" / "main" / "train_summary.json").write_text(json.dumps({"steps": 4}))
    writer = SummaryWriter(str(tmp_path / "runs" / "main"))
    for step in range(4):
        writer.add_scalar("train/loss", 5.0 - step, step)
    writer.close()
    write_config(tmp_path, {
        "sources": [{"path": "rec/speaker.wav", "speaker": "demo", "language": "en"}],
        "transcribe": TRANSCRIBE, "train": {"base_model": "builtin:tiny"},
        "evaluate": {"num_sentences": 2, "max_new_tokens": 6, "num_references": 1},
    })
    # Upstream outputs are given: only this stage's rules may run (and `all`).
    only = ["--allowed-rules", "references", "synthesize", "score", "score_real", "training_curves", "evaluate",
            "review", "all"]
    snakemake(tmp_path, "--cores", "2", *only)
    metrics = json.loads((tmp_path / "reports" / "main" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "finetuned", "real"}
    assert metrics["models"]["finetuned"]["samples"] == 2 and len(metrics["sentences"]) == 2
    for model in ("base", "finetuned"):
        manifest = json.loads((tmp_path / "samples" / "main" / f"{model}.json").read_text())
        assert [s["file"] for s in manifest["samples"]] == ["001.wav", "002.wav"]
        assert all((tmp_path / "samples" / "main" / model / s["file"]).is_file() for s in manifest["samples"])
    assert metrics["models"]["real"]["wer"] <= 0.35  # the ceiling row is real speech, recognised
    assert "| Speaker similarity" in (tmp_path / "reports" / "main" / "metrics.md").read_text()
    page = (tmp_path / "reports" / "main" / "samples.html").read_text()
    assert page.count("data:audio/wav;base64,") == 2 * 2 + 1  # both models' sentences and the reference
    snakemake(tmp_path, "--report", "report.html", *only)
    report = (tmp_path / "report.html").read_text()
    for item in ("loss_curves.png", "metrics.csv", "samples.html", "dataset.html"):
        assert item in report, item
    assert "Speaker similarity" in report  # the caption text is in the report
