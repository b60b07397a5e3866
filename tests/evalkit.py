"""Builders for the synthesize/evaluate/API tests: a dataset of real espeak-ng speech with transcripts,
and tiny random XTTS checkpoints in XTTS's layout (built once per session)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from xttsflow import TRAIN_SAMPLE_RATE
from xttsflow.audio import write_wav
from xttsflow.demo import espeak

#: (clip id, text, avg_logprob): val clips of one speaker; lengths from ~2 s to ~9 s at espeak's 150 wpm.
VAL_CLIPS = [
    ("demo-0a1b2c3d_0001", "The old lighthouse keeper climbed the stairs every evening to light the lamp "
                           "for the ships at sea.", -0.15),
    ("demo-0a1b2c3d_0002", "She walked along the quiet river and counted the boats that drifted slowly "
                           "past the willow trees.", -0.25),
    ("demo-0a1b2c3d_0003", "Good morning to you.", -0.10),
    ("demo-0a1b2c3d_0004", "Our little garden was full of roses, tulips and tall yellow sunflowers that "
                           "summer, and the bees loved it.", -1.6),
]
TRAIN_CLIPS = [("demo-0a1b2c3d_0005", "A train clip that must never be chosen as a reference for the voice.", -0.1)]


def write_dataset(root: Path, val=VAL_CLIPS, train=TRAIN_CLIPS, flags: dict | None = None,
                  source: str = "demo-0a1b2c3d") -> Path:
    """dataset/ (wavs, metadata_*.csv, stats.json, clips.json), the segments/{source}/ WAVs its clips link to
    and transcripts/ under `root`, as the stages write them."""
    flags = flags or {}
    wavs = root / "dataset" / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    source_dir = root / "segments" / source
    source_dir.mkdir(parents=True, exist_ok=True)
    segments = []
    for clip_id, text, logprob in [*val, *train]:
        samples = espeak(text, speed=150)
        write_wav(source_dir / f"{clip_id}.wav", 0.5 * samples, TRAIN_SAMPLE_RATE)
        (wavs / f"{clip_id}.wav").unlink(missing_ok=True)
        os.link(source_dir / f"{clip_id}.wav", wavs / f"{clip_id}.wav")  # as the dataset stage links its clips
        segments.append({"id": clip_id, "file": f"{clip_id}.wav", "duration": len(samples) / TRAIN_SAMPLE_RATE,
                         "text": text, "language": "en", "avg_logprob": logprob, "no_speech_prob": 0.01,
                         "flags": flags.get(clip_id, [])})
    lines = {"val": val, "train": train}
    for split, clips in lines.items():
        (root / "dataset" / f"metadata_{split}.csv").write_text("".join(f"{i}|{t}|{t}\n" for i, t, _ in clips))
    (root / "dataset" / "metadata.csv").write_text("".join(f"{i}|{t}|{t}\n" for i, t, _ in [*val, *train]))
    (root / "dataset" / "stats.json").write_text(json.dumps({"clips": len(segments), "seconds": sum(
        s["duration"] for s in segments), "val": {"clips": len(val)}, "train": {"clips": len(train)}}))
    (root / "transcripts").mkdir(exist_ok=True)
    (root / "transcripts" / f"{source}.json").write_text(json.dumps(
        {"source": source, "speaker": "demo", "language": "en", "segments": segments}))
    split = {clip_id: name for name, clips in lines.items() for clip_id, _, _ in clips}
    (root / "dataset" / "clips.json").write_text(json.dumps({"clips": [
        {"id": s["id"], "source": source, "speaker": "demo", "language": "en", "file": str(source_dir / s["file"]),
         "kept": True, "split": split[s["id"]], "duration": s["duration"], "text": s["text"],
         "normalized_text": s["text"], "tokens": len(s["text"]) + 1,
         "scores": {"confidence": round(math.exp(s["avg_logprob"]), 4), "avg_logprob": s["avg_logprob"],
                    "no_speech_prob": s["no_speech_prob"], "speech_ratio": 0.8, "speaker_similarity": 0.9},
         "flags": s["flags"], "reasons": {}} for s in segments]}))
    return root / "dataset"


def copy_checkpoint(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Two tiny random XTTS checkpoints ("base" seed 0, "finetuned" seed 1): different weights, same layout."""
    from xttsflow.xtts_model import build_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-xtts")
    return {"base": build_tiny_checkpoint(root / "base", seed=0),
            "finetuned": build_tiny_checkpoint(root / "finetuned", seed=1)}


@pytest.fixture(scope="session")
def eval_workdir(tmp_path_factory, tiny_models) -> Path:
    """A workflow folder as the upstream stages leave it: dataset, transcripts, base model, run export."""
    root = tmp_path_factory.mktemp("eval-workdir")
    write_dataset(root)
    copy_checkpoint(tiny_models["base"], root / "models" / "base")
    copy_checkpoint(tiny_models["finetuned"], root / "checkpoints" / "main" / "export")
    return root
