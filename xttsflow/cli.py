"""`xttsflow <stage> ...`: run one stage outside Snakemake (each stage's own --help lists its options)."""

from __future__ import annotations

import importlib
import sys

from .errors import XttsflowError

STAGES = {
    "ingest": "Fetch a URL (yt-dlp) or a local recording into raw FLAC + probe JSON.",
    "segment": "Split a recording at silences into normalised 22050 Hz WAV segments + manifest.",
    "transcribe": "Transcribe a folder of segments with Whisper.",
    "dataset": "Build the LJSpeech dataset from transcripts and segments.",
    "review": "Write the dataset review page: every kept and rejected clip, playable.",
    "train": "Fine-tune XTTS-v2's GPT with LoRA on a dataset.",
    "voices": "Add the dataset's speakers as named voices to an export's speakers_xtts.pth.",
    "synthesize": "Speak text with an XTTS checkpoint folder and reference clip(s).",
    "api": "Serve the inference REST API.",
    "demo": "Write the demo recordings (espeak-ng speech with pauses).",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        width = max(map(len, STAGES))
        print("usage: xttsflow <stage> [options]\n\nstages:")
        for name, text in STAGES.items():
            print(f"  {name:<{width}}  {text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"xttsflow.{argv[0]}")
    try:
        module.main(argv[1:])
    except XttsflowError as err:
        print(f"xttsflow {argv[0]}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
