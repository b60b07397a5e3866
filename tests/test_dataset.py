"""The dataset stage on crafted transcripts, manifests, embeddings and real espeak-ng WAV files."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO

from xttsflow import TRAIN_SAMPLE_RATE
from xttsflow.dataset import DatasetConfig, SourceFiles, build_dataset, split_bucket
from xttsflow.demo import DEMO_SENTENCES
from xttsflow.errors import XttsflowError
from xttsflow.speaker import write_embeddings
from xttsflow.train_data import dataset_configs

SR = TRAIN_SAMPLE_RATE


@pytest.fixture(scope="session")
def voices(make_speech) -> dict[str, np.ndarray]:
    """Real speech: four sentences of 4-7 s, a 1.6 s phrase, and a 12.5 s passage."""
    clips = {f"s{i}": make_speech([text], []).samples for i, text in enumerate(DEMO_SENTENCES[:4])}
    clips["short"] = make_speech(["Hello there."], []).samples
    clips["long"] = make_speech(DEMO_SENTENCES[4:7], [0.3, 0.3]).samples
    assert all(3.5 < len(clips[f"s{i}"]) / SR < 7 for i in range(4))
    assert len(clips["short"]) / SR < 3 and len(clips["long"]) / SR > 11.7
    return clips


def _unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


def voice_embedding(speaker: str, k: int, outlier: bool = False) -> np.ndarray:
    """A speaker's embedding: its own direction plus a little per-clip noise (an outlier: another direction)."""
    base = np.random.default_rng(zlib.crc32((speaker + ("!" if outlier else "")).encode())).standard_normal(256)
    return _unit(_unit(base) + 0.25 * _unit(np.random.default_rng(k).standard_normal(256)))


def write_source(root: Path, source: str, clips: list[dict], speaker: str = "ana", language: str = "en") -> SourceFiles:
    """segments/{source}/ WAVs + manifest, transcripts/{source}.json and embeddings/{source}.npz, as the stages do.

    Each clip dict: audio (samples), text, and optionally id, language, avg_logprob, no_speech_prob,
    flags, speech_ratio, outlier (embedding of another voice), untranscribed, no_file.
    """
    seg_dir = root / "segments" / source
    seg_dir.mkdir(parents=True, exist_ok=True)
    manifest, transcript, ids, embeddings = [], [], [], []
    for k, clip in enumerate(clips, start=1):
        clip_id = clip.get("id", f"{source}_{k:04d}")
        audio = clip["audio"]
        if not clip.get("no_file"):
            sf.write(seg_dir / f"{clip_id}.wav", audio, SR, subtype="PCM_16")
        duration = len(audio) / SR
        manifest.append({"id": clip_id, "file": f"{clip_id}.wav", "start": 0.0, "end": duration,
                         "duration": duration, "peak_dbfs": -1.0, "rms_dbfs": -20.0,
                         "speech_ratio": clip.get("speech_ratio", 0.8), "cut": "silence"})
        if not clip.get("untranscribed"):
            transcript.append({"id": clip_id, "file": f"{clip_id}.wav", "duration": duration, "text": clip["text"],
                               "language": clip.get("language", language), "language_probability": 0.98,
                               "avg_logprob": clip.get("avg_logprob", -0.2),
                               "no_speech_prob": clip.get("no_speech_prob", 0.01), "compression_ratio": 1.2,
                               "words": [], "flags": clip.get("flags", [])})
        ids.append(clip_id)
        embeddings.append(voice_embedding(speaker, k, clip.get("outlier", False)))
    head = {"source": source, "speaker": speaker, "language": language}
    (root / "transcripts").mkdir(exist_ok=True)
    (root / "segments" / f"{source}.json").write_text(json.dumps(
        {**head, "sample_rate": SR, "segments": manifest, "total_duration": 0, "speech_duration": 0}))
    (root / "transcripts" / f"{source}.json").write_text(json.dumps(
        {**head, "backend": "test", "model": "crafted", "backend_version": "0", "segments": transcript, "stats": {}}))
    write_embeddings(root / "embeddings" / f"{source}.npz", ids, np.array(embeddings).reshape(-1, 256))
    return SourceFiles(source, root / "transcripts" / f"{source}.json", root / "segments" / f"{source}.json",
                       root / "embeddings" / f"{source}.npz")


def good_clips(voices, n: int, offset: int = 0) -> list[dict]:
    return [{"audio": voices[f"s{(i + offset) % 4}"], "text": DEMO_SENTENCES[(i + offset) % 4]} for i in range(n)]


def read_rows(path: Path) -> list[list[str]]:
    return [line.split("|") for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tiny_vocab(tmp_path_factory) -> Path:
    """An XTTS-format BPE vocab.json built locally (the one the tiny test checkpoint uses)."""
    from xttsflow.xtts_model import build_tokenizer

    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    build_tokenizer(path)
    return path


def test_dataset_loads_with_coqui_and_xtts_yields_batches(tmp_path, voices, tiny_vocab):
    import torch
    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.layers.xtts.trainer.dataset import XTTSDataset
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainerConfig

    clips = good_clips(voices, 12)
    clips[0]["text"] = " It cost 25 dollars in 1999,  they said. "
    sources = [write_source(tmp_path, "alpha-1234abcd", clips)]
    stats = build_dataset(sources, tmp_path / "dataset", DatasetConfig(vocab=str(tiny_vocab)))
    out = tmp_path / "dataset"

    rows = read_rows(out / "metadata.csv")
    assert len(rows) == stats["clips"] == 12 and all(len(r) == 3 for r in rows)
    assert rows[0] == ["alpha-1234abcd_0001", "It cost 25 dollars in 1999, they said.",
                       # an English year is read as a year (dataset.numbers: expand; issue 10/11)
                       "It cost twenty-five dollars in nineteen ninety-nine, they said."]
    train, val = read_rows(out / "metadata_train.csv"), read_rows(out / "metadata_val.csv")
    assert sorted(train + val) == sorted(rows) and train and val
    assert {r[0] for r in val} >= {r[0] for r in rows if split_bucket(r[0]) < 0.1}
    # hard links: the dataset costs no extra disk
    wav = out / "wavs" / "alpha-1234abcd_0001.wav"
    assert wav.stat().st_ino == (tmp_path / "segments" / "alpha-1234abcd" / "alpha-1234abcd_0001.wav").stat().st_ino
    assert stats["wavs"] == {"hardlink": 12} and stats["text"]["tokenizer"] == f"vocab:{tiny_vocab}"
    assert stats["datasets"] == [{"formatter": "ljspeech", "path": ".", "meta_file_train": "metadata_train.csv",
                                  "meta_file_val": "metadata_val.csv", "language": "en"}]
    assert (out / "durations.png").read_bytes()[:4] == b"\x89PNG"
    assert abs(stats["seconds"] - sum(len(c["audio"]) for c in clips) / SR) < 0.01

    config = GPTTrainerConfig(datasets=[BaseDatasetConfig(**d) for d in dataset_configs(out, None)],
                              model_args=GPTArgs(max_wav_length=255995, max_text_length=200,
                                                 min_conditioning_length=SR, max_conditioning_length=2 * SR))
    train_samples, eval_samples = load_tts_samples(config, eval_split=True)
    assert len(train_samples) == len(train) and len(eval_samples) == len(val)
    assert {s["language"] for s in train_samples} == {"en"}
    tokenizer = VoiceBpeTokenizer(str(tiny_vocab))
    dataset = XTTSDataset(config, train_samples, tokenizer, SR, is_eval=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=dataset.collate_fn)
    batch = next(iter(loader))
    assert batch["wav"].shape[0] == 4 and batch["padded_text"].shape[0] == 4
    assert int(batch["wav_lengths"].max()) <= 255995 and int(batch["text_lengths"].max()) <= 200
    assert not dataset.failed_samples, "XTTS's dataset silently dropped clips we kept"
    eval_set = XTTSDataset(config, eval_samples, tokenizer, SR, is_eval=True)
    assert len(eval_set) == len(val), "XTTS's eval check dropped clips we kept"


def test_every_filter_is_counted_and_explained(tmp_path, voices):
    v = voices
    crafted = [
        {"audio": v["s0"], "text": DEMO_SENTENCES[0]},                                     # 1 kept
        {"audio": v["s1"], "text": DEMO_SENTENCES[1], "no_file": True},                    # 2 audio (missing)
        {"audio": v["s2"], "text": DEMO_SENTENCES[2], "untranscribed": True},              # 3 untranscribed
        {"audio": v["short"], "text": "Hello there."},                                     # 4 duration (short)
        {"audio": v["long"], "text": "A long passage about the sea."},                     # 5 duration (long)
        {"audio": v["s3"], "text": "   "},                                                 # 6 empty_text
        {"audio": v["s0"], "text": "Olá, tudo bem com você?", "language": "pt"},           # 7 language
        {"audio": v["s1"], "text": "He sang ♪ la la ♪ by the sea."},                       # 8 characters
        {"audio": v["s2"], "text": " ".join(DEMO_SENTENCES[:3])},                          # 9 text_tokens
        {"audio": v["s3"], "text": DEMO_SENTENCES[3], "avg_logprob": -1.4},                # 10 confidence
        {"audio": v["s0"], "text": DEMO_SENTENCES[0], "no_speech_prob": 0.9},              # 11 confidence
        {"audio": v["s1"], "text": DEMO_SENTENCES[1], "flags": ["repetition: 'the sea' x5"]},  # 12 flags
        {"audio": v["s2"], "text": DEMO_SENTENCES[2], "outlier": True},                    # 13 speaker
        {"audio": v["s3"], "text": DEMO_SENTENCES[3], "speech_ratio": 0.2},                # 14 silence
        {"audio": v["s0"], "text": DEMO_SENTENCES[0], "flags": ["chars_per_second: 26 > 25"]},  # 15 ignored flag
        {"audio": v["s1"], "text": DEMO_SENTENCES[1], "flags": ["avg_logprob: -1.1 < -1.0"]},  # 16 own threshold
    ]
    crafted += good_clips(voices, 5)  # 17-20 kept (the speaker centroid needs a majority), 21 corrupted below
    sources = [write_source(tmp_path, "mix-00000001", crafted)]
    corrupt = tmp_path / "segments" / "mix-00000001" / "mix-00000001_0021.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + os.urandom(64))  # 21 audio (corrupt)
    config = DatasetConfig(max_text_tokens=150, ignore_flags=("chars_per_second",), min_avg_logprob=-1.2)
    stats = build_dataset(sources, tmp_path / "dataset", config)

    with open(tmp_path / "dataset" / "rejected.csv", newline="", encoding="utf-8") as f:
        rejected = {row["id"].rsplit("_", 1)[1]: row for row in csv.DictReader(f)}
    expected = {"0002": "audio", "0003": "untranscribed", "0004": "duration", "0005": "duration",
                "0006": "empty_text", "0007": "language", "0008": "characters", "0009": "text_tokens",
                "0010": "confidence", "0011": "confidence", "0012": "flags", "0013": "speaker",
                "0014": "silence", "0021": "audio"}
    assert {k: r["filters"] for k, r in rejected.items()} == expected
    assert "missing file" in rejected["0002"]["reasons"] and "unreadable audio" in rejected["0021"]["reasons"]
    assert "♪" in rejected["0008"]["reasons"] and "detected pt in a en source" in rejected["0007"]["reasons"]
    assert "> 11.6 s" in rejected["0005"]["reasons"] and "< 3.0 s" in rejected["0004"]["reasons"]
    assert "char-estimate" in rejected["0009"]["reasons"]
    assert stats["rejected_by_filter"] == {"audio": 2, "untranscribed": 1, "duration": 2, "empty_text": 1,
                                           "language": 1, "characters": 1, "text_tokens": 1, "confidence": 2,
                                           "flags": 1, "speaker": 1, "silence": 1}
    kept = {r[0].rsplit("_", 1)[1] for r in read_rows(tmp_path / "dataset" / "metadata.csv")}
    assert kept == {"0001", "0015", "0016", "0017", "0018", "0019", "0020"}
    assert stats["clips"] == 7 and stats["rejected"] == 14 and stats["segments_in"] == 21
    assert stats["sources"]["mix-00000001"]["kept"] == 7
    # every second accounted for: kept plus each drop (charged to its first filter) is what was decoded
    seconds = stats["accounting"]["sources"]["mix-00000001"]
    assert seconds["kept"] == pytest.approx(stats["accounting"]["total"]["kept"]) == pytest.approx(stats["seconds"],
                                                                                                  abs=1e-2)
    assert seconds["kept"] + sum(seconds["dropped"].values()) == pytest.approx(seconds["decoded"], abs=1e-2)
    assert seconds["transcribed"] == pytest.approx(seconds["in_segments"] - len(v["s2"]) / SR, abs=1e-2)
    assert set(seconds["dropped"]) == {"transcribe: untranscribed", *(f"dataset: {f}" for f in (
        "audio", "duration", "empty_text", "language", "characters", "text_tokens", "confidence", "flags",
        "speaker", "silence"))}


def test_each_filter_can_be_turned_off(tmp_path, voices):
    crafted = [
        {"audio": voices["s0"], "text": DEMO_SENTENCES[0], "avg_logprob": -3.0, "no_speech_prob": 0.99},
        {"audio": voices["s1"], "text": DEMO_SENTENCES[1], "flags": ["known_phrase: 'x'"]},
        {"audio": voices["s2"], "text": DEMO_SENTENCES[2], "outlier": True},
        {"audio": voices["s3"], "text": DEMO_SENTENCES[3], "speech_ratio": 0.05},
        {"audio": voices["short"], "text": "Hello there."},
    ] + good_clips(voices, 4)
    sources = [write_source(tmp_path, "loose-00000001", crafted)]
    config = DatasetConfig(min_avg_logprob=None, max_no_speech_prob=None, reject_flagged=False,
                           speaker_similarity=None, min_speech_ratio=None, min_duration=1.0)
    stats = build_dataset(sources, tmp_path / "dataset", config)
    assert stats["clips"] == 9 and stats["rejected"] == 0 and stats["rejected_by_filter"] == {}


def test_split_is_stable_when_a_source_is_added(tmp_path, voices):
    first = [write_source(tmp_path, "first-00000001", good_clips(voices, 40))]
    before = build_dataset(first, tmp_path / "dataset", DatasetConfig(speaker_similarity=None))
    split_before = {r[0]: "val" for r in read_rows(tmp_path / "dataset" / "metadata_val.csv")}
    split_before |= {r[0]: "train" for r in read_rows(tmp_path / "dataset" / "metadata_train.csv")}
    assert 1 <= before["val"]["clips"] <= 10 and before["split"]["moved_for_small_groups"] == []

    second = first + [write_source(tmp_path, "second-00000002", good_clips(voices, 40, offset=1), speaker="ana")]
    after = build_dataset(second, tmp_path / "dataset", DatasetConfig(speaker_similarity=None))
    split_after = {r[0]: "val" for r in read_rows(tmp_path / "dataset" / "metadata_val.csv")}
    split_after |= {r[0]: "train" for r in read_rows(tmp_path / "dataset" / "metadata_train.csv")}
    assert after["clips"] == 80 and after["split"]["moved_for_small_groups"] == []
    assert {k: split_after[k] for k in split_before} == split_before
    assert 2 <= after["val"]["clips"] <= 16  # ~10% of 80
    assert all((split_bucket(k) < 0.1) == (s == "val") for k, s in split_after.items())


def test_small_dataset_still_gets_a_val_clip(tmp_path, voices):
    ids = [f"tiny-00000001_{k:04d}" for k in range(1, 4)]
    assert all(split_bucket(i) >= 0.1 for i in ids)  # hashing alone would leave val empty
    stats = build_dataset([write_source(tmp_path, "tiny-00000001", good_clips(voices, 3))], tmp_path / "dataset",
                          DatasetConfig())
    assert stats["val"]["clips"] == 1 and stats["train"]["clips"] == 2
    assert stats["split"]["moved_for_small_groups"] == [min(ids, key=split_bucket)]


def test_source_with_zero_segments_and_fully_flagged_source(tmp_path, voices, caplog):
    empty = write_source(tmp_path, "silence-00000001", [])
    flagged = write_source(tmp_path, "music-00000002", [
        {**c, "flags": ["known_phrase: 'thanks for watching'"]} for c in good_clips(voices, 3)])
    good = write_source(tmp_path, "talk-00000003", good_clips(voices, 4))
    with caplog.at_level(logging.INFO, logger="xttsflow.dataset"):
        stats = build_dataset([empty, flagged, good], tmp_path / "dataset", DatasetConfig())
    assert "0 usable clips from source silence-00000001" in caplog.text
    assert "0 usable clips from source music-00000002" in caplog.text
    assert stats["clips"] == 4 and stats["sources"]["silence-00000001"]["segments"] == 0
    assert stats["sources"]["music-00000002"] == {"segments": 3, "kept": 0, "rejected_by_filter": {"flags": 3},
                                                  "speaker": "ana", "language": "en"}


def test_empty_dataset_fails_naming_the_filters(tmp_path, voices):
    flagged = write_source(tmp_path, "music-00000002", [
        {**c, "flags": ["known_phrase: 'thanks for watching'"]} for c in good_clips(voices, 3)]
        + [{"audio": voices["short"], "text": "Hi."}])
    empty = write_source(tmp_path, "silence-00000001", [])
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "stats.json").write_text("{}")  # an older dataset stays as it was
    with pytest.raises(XttsflowError) as err:
        build_dataset([flagged, empty], tmp_path / "dataset", DatasetConfig())
    message = str(err.value)
    assert "no usable clips" in message and "4 segments from 2 source(s)" in message
    assert "duration 1" in message and "flags 3" in message and "loosen the filters" in message
    assert (tmp_path / "dataset" / "stats.json").read_text() == "{}"


def test_unreadable_transcript_fails_only_that_source(tmp_path, voices):
    good = write_source(tmp_path, "talk-00000003", good_clips(voices, 4))
    broken = write_source(tmp_path, "broken-00000004", good_clips(voices, 2))
    broken.transcript.write_text('{"segments": [')
    stats = build_dataset([good, broken], tmp_path / "dataset", DatasetConfig())
    assert stats["clips"] == 4 and "cannot read" in stats["sources"]["broken-00000004"]["error"]


def test_mixed_language_source(tmp_path, voices):
    clips = good_clips(voices, 6) + [
        {"audio": voices["s0"], "text": "Eu tenho 25 anos e moro em Lisboa.", "language": "pt"},
        {"audio": voices["s1"], "text": "Ela comprou 3 livros na feira.", "language": "pt"},
    ]
    source = write_source(tmp_path, "bilingual-00000005", clips, language="en")
    rejected = build_dataset([source], tmp_path / "reject", DatasetConfig(speaker_similarity=None))
    assert rejected["clips"] == 6 and rejected["rejected_by_filter"] == {"language": 2}

    kept = build_dataset([source], tmp_path / "keep", DatasetConfig(speaker_similarity=None,
                                                                     language_mismatch="keep", min_val_clips=1))
    assert kept["clips"] == 8 and set(kept["languages"]) == {"en", "pt"}
    normalized = {r[0]: r[2] for r in read_rows(tmp_path / "keep" / "metadata.csv")}
    assert normalized["bilingual-00000005_0007"] == "Eu tenho vinte e cinco anos e moro em Lisboa."
    assert [d["language"] for d in kept["datasets"]] == ["en", "pt"]
    assert all(d["formatter"] == "coqui" for d in kept["datasets"])

    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainerConfig

    config = GPTTrainerConfig(datasets=[BaseDatasetConfig(**d) for d in dataset_configs(tmp_path / "keep", None)])
    train, val = load_tts_samples(config, eval_split=True)
    by_language = {}
    for s in train + val:
        by_language.setdefault(s["language"], set()).add(Path(s["audio_file"]).stem)
    assert by_language["pt"] == {"bilingual-00000005_0007", "bilingual-00000005_0008"}
    assert len(by_language["en"]) == 6 and all(s["speaker_name"] == "ana" for s in train + val)


def test_characters_outside_the_tokenizer(tmp_path, voices, tiny_vocab):
    clips = good_clips(voices, 4) + [
        {"audio": voices["s0"], "text": "The keeper smiled 🙂 at the sea."},
        {"audio": voices["s1"], "text": "He wrote “Gone fishing” – back at noon…"},  # typographic: mapped, kept
        {"audio": voices["s2"], "text": "He said 谢谢 to the sailor."},
    ]
    source = write_source(tmp_path, "chars-00000006", clips)
    strict = build_dataset([source], tmp_path / "strict", DatasetConfig(vocab=str(tiny_vocab)))
    assert strict["clips"] == 5 and strict["rejected_by_filter"] == {"characters": 2}
    with open(tmp_path / "strict" / "rejected.csv", encoding="utf-8") as f:
        reasons = {row["id"]: row["reasons"] for row in csv.DictReader(f)}
    assert "🙂" in reasons["chars-00000006_0005"] and "谢" in reasons["chars-00000006_0007"]
    normalized = {r[0]: r[2] for r in read_rows(tmp_path / "strict" / "metadata.csv")}
    assert normalized["chars-00000006_0006"] == 'He wrote "Gone fishing" - back at noon...'

    stripped = build_dataset([source], tmp_path / "strip", DatasetConfig(vocab=str(tiny_vocab),
                                                                         unsupported_chars="strip"))
    assert stripped["clips"] == 7
    normalized = {r[0]: r[2] for r in read_rows(tmp_path / "strip" / "metadata.csv")}
    assert normalized["chars-00000006_0005"] == "The keeper smiled at the sea."
    assert normalized["chars-00000006_0007"] == "He said to the sailor."
    # without a vocab the alphabet check (letters + punctuation) catches the emoji but not the Chinese letters
    estimate = build_dataset([source], tmp_path / "estimate", DatasetConfig())
    assert estimate["rejected_by_filter"] == {"characters": 1} and estimate["text"]["tokenizer"] == "char-estimate"


def test_numbers_read_by_meaning_are_expanded_or_drop_the_clip(tmp_path, voices):
    clips = good_clips(voices, 4) + [
        {"audio": voices["s0"], "text": "In 1984 the keeper lit the lamp at 9:30."},
        {"audio": voices["s1"], "text": "He counted 25 geese."},  # a plain cardinal: never ambiguous
    ]
    source = write_source(tmp_path, "nums-00000007", clips)
    expanded = build_dataset([source], tmp_path / "expand", DatasetConfig())
    assert expanded["clips"] == 6
    normalized = {r[0]: r[2] for r in read_rows(tmp_path / "expand" / "metadata.csv")}
    assert normalized["nums-00000007_0005"] == "In nineteen eighty-four the keeper lit the lamp at nine thirty."
    dropped = build_dataset([source], tmp_path / "drop", DatasetConfig(numbers="drop"))
    assert dropped["clips"] == 5 and dropped["rejected_by_filter"] == {"numbers": 1}
    with open(tmp_path / "drop" / "rejected.csv", encoding="utf-8") as f:
        reasons = {row["id"]: row["reasons"] for row in csv.DictReader(f)}
    assert reasons["nums-00000007_0005"] == "numbers: time 9:30, year 1984: read by meaning (numbers: drop)"


def test_an_unsure_language_detection_keeps_the_sources_language(tmp_path, voices):
    clips = good_clips(voices, 4) + [{"audio": voices["s0"], "text": DEMO_SENTENCES[0], "language": "la"},
                                     {"audio": voices["s1"], "text": DEMO_SENTENCES[1], "language": "la"}]
    source = write_source(tmp_path, "unsure-00000008", clips)
    transcript = json.loads(source.transcript.read_text())
    transcript["segments"][4]["language_probability"] = 0.2  # Whisper base on espeak-ng Portuguese says this
    source.transcript.write_text(json.dumps(transcript))
    built = build_dataset([source], tmp_path / "out", DatasetConfig())
    assert built["clips"] == 5 and built["rejected_by_filter"] == {"language": 1}  # the sure "la" (p=0.98) only


def test_multi_speaker_dataset_uses_coqui_layout(tmp_path, voices):
    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainerConfig

    quoted = {"audio": voices["s0"], "text": '"Gone fishing," he wrote | back at noon.'}
    ana = write_source(tmp_path, "ana-00000007", good_clips(voices, 4) + [quoted], speaker="ana")
    bob = write_source(tmp_path, "bob-00000008", good_clips(voices, 5, offset=2), speaker="bob")
    stats = build_dataset([ana, bob], tmp_path / "dataset", DatasetConfig())
    assert stats["clips"] == 10 and set(stats["speakers"]) == {"ana", "bob"}
    assert stats["datasets"][0]["formatter"] == "coqui"
    config = GPTTrainerConfig(datasets=[BaseDatasetConfig(**d) for d in dataset_configs(tmp_path / "dataset", None)])
    train, val = load_tts_samples(config, eval_split=True)
    speakers = {Path(s["audio_file"]).stem.split("-")[0]: s["speaker_name"] for s in train + val}
    assert speakers == {"ana": "ana", "bob": "bob"} and len(train) + len(val) == 10
    texts = {Path(s["audio_file"]).stem: s["text"] for s in train + val}
    assert texts["ana-00000007_0005"] == '"Gone fishing," he wrote back at noon.'  # csv quoting survives


def test_cli_runs_the_stage(tmp_path, voices):
    write_source(tmp_path, "cli-00000009", good_clips(voices, 5) + [{"audio": voices["short"], "text": "Hi."}])
    proc = subprocess.run([sys.executable, "-m", "xttsflow.dataset", str(tmp_path), "--min-duration", "1",
                           "--speaker-similarity", "none"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "6 clips" in proc.stdout
    stats = json.loads((tmp_path / "dataset" / "stats.json").read_text())
    assert stats["config"]["min_duration"] == 1.0 and stats["config"]["speaker_similarity"] is None

    bad = subprocess.run([sys.executable, "-m", "xttsflow.cli", "dataset", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 1 and "no transcripts found" in bad.stderr


@pytest.mark.slow
def test_snakemake_rule_builds_the_dataset(tmp_path, voices):
    from conftest import planned_jobs, snakemake, write_config

    from xttsflow.sources import local_source_id

    ids = [local_source_id(name) for name in ("a.wav", "b.wav")]
    write_config(tmp_path, {"sources": [{"path": "a.wav", "speaker": "ana", "language": "en"},
                                        {"path": "b.wav", "speaker": "ana", "language": "en"}],
                            "until": "dataset", "dataset": {"min_duration": 2.0}})
    # The upstream stages' files, oldest first, as earlier jobs would have left them.
    for k, sid in enumerate(ids):
        (tmp_path / "raw").mkdir(exist_ok=True)
        sf.write(tmp_path / "raw" / f"{sid}.flac", voices["s0"], SR, format="FLAC")
        (tmp_path / "raw" / f"{sid}.json").write_text(json.dumps({"source": sid}))
        write_source(tmp_path, sid, good_clips(voices, 4, offset=k))
        for stage in ("ingest", "segment", "transcribe", "speaker_embed"):  # each job's status (xttsflow/status.py)
            (tmp_path / "status" / stage).mkdir(parents=True, exist_ok=True)
            (tmp_path / "status" / stage / f"{sid}.json").write_text(json.dumps({"ok": True, "source": sid,
                                                                                 "stage": stage}))
    stamp = 1_700_000_000
    for order, pattern in enumerate(["raw/*", "status/ingest/*", "segments/*/*.wav", "segments/*", "status/segment/*",
                                     "transcripts/*", "embeddings/*", "status/transcribe/*", "status/speaker_embed/*"]):
        for path in tmp_path.glob(pattern):
            os.utime(path, (stamp + order * 10, stamp + order * 10))
    # Hand-made upstream files have no Snakemake records ("code changed" would re-run them): judge by mtime.
    # Only the dataset job can run: the recordings a.wav and b.wav do not exist, so ingest would fail.
    mtime_only = ("--rerun-triggers", "mtime")
    snakemake(tmp_path, "--cores", "1", *mtime_only)
    stats = json.loads((tmp_path / "dataset" / "stats.json").read_text())
    assert stats["clips"] == 8 and set(stats["sources"]) == set(ids) and stats["config"]["min_duration"] == 2.0
    assert len(read_rows(tmp_path / "dataset" / "metadata.csv")) == 8
    assert len(list((tmp_path / "dataset" / "wavs").glob("*.wav"))) == 8
    assert "8 clips" in (tmp_path / "logs" / "dataset.log").read_text()
    assert planned_jobs(tmp_path, *mtime_only) == {}


def test_schema_defaults_are_the_stage_defaults_and_bad_options_stop_the_run():
    from snakemake.utils import validate

    config = {"sources": [{"path": "a.wav", "speaker": "ana"}]}
    validate(config, str(REPO / "config" / "schema.yaml"))
    assert DatasetConfig(**config["dataset"]) == DatasetConfig()
    for bad in ({"max_duration": 12}, {"min_duration": -1}, {"unsupported_chars": "ignore"}, {"val_fraction": 1},
                {"speaker_simlarity": 0.5}):
        with pytest.raises(Exception, match="|".join(bad)):
            validate({"sources": config["sources"], "dataset": bad}, str(REPO / "config" / "schema.yaml"))
