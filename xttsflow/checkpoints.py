"""Training checkpoints: everything a run needs to continue exactly, written atomically, read weights-only.

A checkpoint holds the trainable weights (the LoRA adapters, or the whole GPT), optimizer, scheduler and
AMP scaler state, the step/epoch/batch counters, every RNG state and the settings fingerprint. It is a
temporary file renamed into place, so a kill at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from .errors import XttsflowError
from .xtts_model import load_state, save_state

log = logging.getLogger(__name__)

PERIODIC = re.compile(r"^checkpoint_(\d{8})\.pt$")
BEST = "best_model.pt"


def periodic_name(step: int) -> str:
    return f"checkpoint_{step:08d}.pt"


def periodic(run_dir: Path) -> list[Path]:
    """Periodic checkpoints, oldest first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m[1]), p) for p in run_dir.iterdir() if (m := PERIODIC.match(p.name))]
    return [p for _, p in sorted(found)]


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict) -> None:
    save_state(path, state)


def fingerprint_json(fingerprint: dict) -> str:
    return json.dumps(fingerprint, sort_keys=True)


def latest(run_dir: Path, fingerprint: str) -> dict | None:
    """The newest readable checkpoint of this run made under the same settings, or None.

    A checkpoint that cannot be read (it should not happen: they are written atomically) is skipped
    with a warning, falling back to the one before it.
    """
    for path in reversed(periodic(run_dir)):
        try:
            state = load_state(path, "training checkpoint")
        except XttsflowError as err:
            log.warning("skipping unreadable checkpoint: %s", err)
            continue
        if state.get("fingerprint") != fingerprint:
            log.info("%s was made with other settings; not resuming from it", path.name)
            return None
        return state
    return None


def discard_stale(run_dir: Path, fingerprint: str) -> None:
    """Remove checkpoints made under other settings, so they can never be resumed into this run."""
    for path in [*periodic(run_dir), run_dir / BEST]:
        if not path.exists():
            continue
        try:
            same = load_state(path, "training checkpoint").get("fingerprint") == fingerprint
        except XttsflowError:
            same = False
        if not same:
            log.info("removing %s (other settings or unreadable)", path)
            path.unlink()


def remove_temporaries(run_dir: Path) -> None:
    """Temporary files a killed save left behind (never renamed into place, so never a checkpoint)."""
    for path in [*run_dir.glob(".*.tmp"), *run_dir.glob(".*.old")]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def prune(run_dir: Path, keep: int) -> None:
    for path in periodic(run_dir)[:-keep]:
        path.unlink(missing_ok=True)
