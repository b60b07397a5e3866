"""Outputs of a run: the LoRA adapter in peft's format and the merged model as a standard XTTS folder.

The export holds model.pth with the adapters merged into the GPT weights, plus the base model's
config.json, vocab.json, dvae.pth, mel_stats.pth and speakers_xtts.pth, so coqui-tts
(`Xtts.load_checkpoint`) and the XTTS tools users already run load it like the original model.
speakers_xtts.pth also holds the dataset's speakers as named voices (xttsflow.voices).

`python -m xttsflow.export --base models/base --run checkpoints/main` re-exports a finished run.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from .atomic import atomic_dir, read_json, write_json
from .errors import XttsflowError
from .voices import SPEAKERS_FILE, add_voices
from .xtts_model import XTTS_FILES, save_state

log = logging.getLogger(__name__)

#: Files of the base model that the export carries over unchanged.
CARRIED = tuple(name for name in XTTS_FILES if name != "model.pth")


def save_adapter(peft_model, out_dir: Path) -> Path:
    """peft's save_pretrained (adapter_config.json + adapter_model.safetensors), swapped in atomically."""
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(str(tmp))
    return out_dir


def xtts_state(model) -> dict:
    """The Xtts module's weights as XTTS-v2's model.pth holds them (no inference-only aliases)."""
    return {
        k: v.detach().cpu().clone()
        for k, v in model.xtts.state_dict().items()
        if not k.startswith(("gpt.gpt_inference", "gpt.gpt.wte"))
    }


def export_model(model, peft_model, base_dir: Path, out_dir: Path, info: dict,
                 voices: dict[str, list[dict]] | None = None) -> Path:
    """Merge the adapters (when there are any) and write a complete XTTS folder at `out_dir`, atomically;
    `voices` (speaker -> clips, xttsflow.voices.choose_clips) become named voices in its speakers_xtts.pth."""
    if peft_model is not None:
        peft_model.merge_and_unload()  # folds B @ A * alpha / r into each Conv1D weight, removes the adapters
    base_config = read_json(base_dir / "config.json")
    with atomic_dir(out_dir) as tmp:
        save_state(tmp / "model.pth", {"model": xtts_state(model), "config": base_config})
        for name in CARRIED:
            link_or_copy(base_dir / name, tmp / name)
        if voices:  # computed with the merged weights; replaces the link to the base's file, never writes through it
            info = {**info, "voices": add_voices(model.xtts, base_dir / SPEAKERS_FILE, tmp / SPEAKERS_FILE, voices)}
        write_json(tmp / "xttsflow.json", info)
    log.info("exported the fine-tuned model to %s", out_dir)
    return out_dir


def link_or_copy(src: Path, dest: Path) -> None:
    # A hard link shares the (often 200 MB) DVAE with the base folder; copy across file systems.
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console
    from .train import export_run

    parser = argparse.ArgumentParser(prog="python -m xttsflow.export", description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, type=Path, help="base model folder in XTTS layout")
    parser.add_argument("--run", required=True, type=Path, help="the run's checkpoint folder (checkpoints/<run>)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--out", type=Path, help="export folder (default: <run>/export)")
    args = parser.parse_args(argv)
    setup_console()
    try:
        print(export_run(args.base, args.run, args.out or args.run / "export", args.checkpoint))
    except XttsflowError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
