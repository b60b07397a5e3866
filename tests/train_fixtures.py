"""Shared, per-session data for the train-stage tests: one tiny XTTS folder and one tiny espeak dataset."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from xttsflow.atomic import write_json
from xttsflow.audio import write_wav
from xttsflow.demo import DEMO_SENTENCES, espeak
from xttsflow.settings import load_settings
from xttsflow.xtts_model import build_tiny_checkpoint

_CACHE: dict[str, Path] = {}
_ROOT = Path(tempfile.mkdtemp(prefix="xttsflow-train-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)  # the tiny model is 300 MB

#: Settings every test run uses unless it says otherwise: small, fast, deterministic, nothing from .env.
FAST = dict(language="en", batch_size=2, num_workers=0, log_every_n_steps=1, save_every_n_steps=100,
            eval_audio=False, use_tensorboard=False, lora_dropout=0.0, lr_scheduler="constant")


def tiny_base() -> Path:
    """The tiny random XTTS checkpoint folder (built once per test session)."""
    if "base" not in _CACHE:
        _CACHE["base"] = build_tiny_checkpoint(_ROOT / "tiny-base", seed=0)
    return _CACHE["base"]


def copy_base(dest: Path) -> Path:
    """A private copy of the tiny base made of hard links: unlink a file before replacing it."""
    shutil.copytree(tiny_base(), dest, copy_function=os.link)
    return dest


def tiny_dataset(n_train: int = 4, n_val: int = 2) -> Path:
    """An LJSpeech-layout dataset of espeak sentences (2-5 s each) with a stats.json like the dataset stage's."""
    key = f"dataset-{n_train}-{n_val}"
    if key not in _CACHE:
        folder = _ROOT / key
        (folder / "wavs").mkdir(parents=True)
        rows = []
        for i, text in enumerate(DEMO_SENTENCES[: n_train + n_val]):
            write_wav(folder / "wavs" / f"clip{i:03d}.wav", espeak(text, speed=220), 22050)
            rows.append(f"clip{i:03d}|{text}|{text}")
        (folder / "metadata_train.csv").write_text("\n".join(rows[:n_train]) + "\n")
        (folder / "metadata_val.csv").write_text("\n".join(rows[n_train:]) + "\n")
        write_stats(folder)
        _CACHE[key] = folder
    return _CACHE[key]


def write_stats(folder: Path, language: str = "en") -> None:
    write_json(folder / "stats.json", {"datasets": [
        {"formatter": "ljspeech", "path": ".", "meta_file_train": "metadata_train.csv",
         "meta_file_val": "metadata_val.csv", "language": language}]})


def long_clip_dataset(folder: Path, seconds: float = 12.5) -> Path:
    """A dataset whose every clip is over XTTS's 11.6 s limit."""
    (folder / "wavs").mkdir(parents=True)
    speech = espeak(" ".join(DEMO_SENTENCES[:4]), speed=120)
    speech = np.resize(speech, int(seconds * 22050))
    rows = []
    for i in range(3):
        write_wav(folder / "wavs" / f"long{i}.wav", speech, 22050)
        rows.append(f"long{i}|{DEMO_SENTENCES[i]}|{DEMO_SENTENCES[i]}")
    (folder / "metadata_train.csv").write_text("\n".join(rows) + "\n")
    (folder / "metadata_val.csv").write_text("")
    write_stats(folder)
    return folder


def settings(**overrides):
    """TrainingSettings for a test run: FAST with `overrides`."""
    return load_settings(None, env_file=None, **{**FAST, **overrides})


def folders(tmp: Path, dataset: Path | None = None) -> dict:
    """Where a test run under `tmp` reads its dataset and writes checkpoints/main and runs/main."""
    return {"dataset_dir": dataset or tiny_dataset(), "run_dir": tmp / "checkpoints" / "main",
            "log_dir": tmp / "runs" / "main"}
