"""`xttsflow <stage> ...`: run one stage outside Snakemake, with one command-line shape for every stage.

Each stage module's main(argv) builds its parser with `parser(stage, ...)` and raises XttsflowError when the
run fails; `run(stage, main)` (behind both `xttsflow <stage>` and `python -m xttsflow.<stage>`) turns that
into one line on stderr, `xttsflow <stage>: <message>`, and exit status 1. Usage errors exit 2 (argparse's
own, or an option out of its range); a traceback is shown only with --debug.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable

from .errors import XttsflowError

#: Stage -> what it does; each is the module xttsflow.<stage> with a main(argv).
STAGES = {
    "ingest": "Fetch a URL (yt-dlp) or a local recording into raw FLAC + probe JSON.",
    "segment": "Split a recording at silences into normalised 22050 Hz WAV segments + manifest.",
    "transcribe": "Transcribe a segments manifest, or audio files and folders, with Whisper.",
    "speaker": "Embed one source's segments with Resemblyzer (speaker vectors for the dataset stage).",
    "dataset": "Build the LJSpeech dataset from transcripts and segments.",
    "base_model": "Prepare the base model to fine-tune (builtin:tiny, a coqui-tts name or a folder).",
    "review": "Write the dataset review page: every kept and rejected clip, playable.",
    "train": "Fine-tune XTTS-v2's GPT with LoRA on a dataset.",
    "export": "Re-export a finished training run as an XTTS checkpoint folder.",
    "voices": "Add the dataset's speakers as named voices to an export's speakers_xtts.pth.",
    "evaluate": "Choose references, score samples, compare base and fine-tuned models.",
    "synthesize": "Speak text with an XTTS checkpoint folder and reference clip(s).",
    "api": "Serve the inference REST API.",
    "demo": "Write the demo recordings (espeak-ng speech with pauses).",
    "fetch-models": "Download the base and Whisper models the config names (for offline nodes).",
}
DEBUG_FLAG = "--debug"


def module_name(stage: str) -> str:
    """The module that implements `stage` (`fetch-models` -> xttsflow.fetch_models)."""
    return f"xttsflow.{stage.replace('-', '_')}"


def parser(stage: str, description: str | None = None, **kwargs) -> argparse.ArgumentParser:
    """The stage's argument parser: `usage: xttsflow <stage> ...` and the shared --debug flag."""
    parsed = argparse.ArgumentParser(prog=f"xttsflow {stage}", description=description, **kwargs)
    # run() reads the flag before main() parses (it must reach a failure anywhere); listed here for --help.
    parsed.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback when the run fails")
    return parsed


def _usage_error(err) -> str:
    """A pydantic ValidationError as `name: what is wrong (got value)`, one option per clause."""
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"] if not isinstance(p, int) and "[" not in str(p)) or "option"
        parts.append(f"{where}: {e['msg']} (got {e['input']!r})")
    return "; ".join(parts)


def run(stage: str, main: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Call a stage's main(argv) and map its outcome to the exit status and the one-line message."""
    from pydantic import ValidationError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]  # subcommand parsers need not know it
    try:
        main(argv)
    except SystemExit:
        raise  # argparse's usage errors (2) and --help (0)
    except ValidationError as err:
        if debug:
            traceback.print_exc()
        print(f"xttsflow {stage}: {_usage_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xttsflow {stage}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        from . import diskfull

        if debug:
            traceback.print_exc()
        if diskfull.is_disk_full(err):  # however the library below words it (an XttsflowError may quote it)
            message = diskfull.message()
        elif isinstance(err, XttsflowError):
            message = str(err).removeprefix(f"{stage}: ")  # the package's sentences often name their stage already
        else:
            hint = "" if debug else f" (run with {DEBUG_FLAG} for the traceback)"
            message = f"{type(err).__name__}: {err}{hint}"
        print(f"xttsflow {stage}: {message}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        width = max(map(len, STAGES))
        print("usage: xttsflow <stage> [options]   (xttsflow <stage> --help for its options)\n\nstages:")
        for name, text in STAGES.items():
            print(f"  {name:<{width}}  {text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"xttsflow: unknown stage {argv[0]!r}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(module_name(argv[0]))
    return run(argv[0], module.main, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
