"""Logging set-up shared by the rule scripts and the command-line entry points."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import diskfull
from .errors import XttsflowError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def to_file(path: str | Path, outputs: Iterable[str | Path] = ()) -> Iterator[None]:
    """Send logging, stdout and stderr of a rule's job to its Snakemake log file.

    A failure is logged with its traceback, so the log alone explains a failed job. An XttsflowError
    (a problem with the user's input, worded for them) leads its log entry with its sentence and ends
    the job with that sentence alone on the console: the traceback is for the log, not for the user.
    A full disk, however the library below words it, becomes one sentence naming the job's `outputs`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield
        except Exception as err:
            if not (isinstance(err, XttsflowError) or diskfull.is_disk_full(err, outputs)):
                logging.getLogger("xttsflow").exception("job failed")
                raise
            sentence = diskfull.message(outputs) if diskfull.is_disk_full(err, outputs) else str(err)
            logging.getLogger("xttsflow").error("%s", sentence, exc_info=err)
            # SystemExit with a message: Python prints just that line on stderr (Snakemake's console), exit 1.
            raise SystemExit(sentence) from None
        finally:
            root.removeHandler(handler)


def setup_console(verbose: bool = False) -> None:
    """Logging for the command-line entry points."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, stream=sys.stderr)
