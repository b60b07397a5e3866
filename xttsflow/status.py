"""Per-source status files: a source that fails in one stage is recorded there and skipped downstream.

With `on_source_error: skip` (the default) a per-source job that fails still succeeds as a Snakemake job:
it removes what it half-wrote, leaves empty placeholders in its outputs' places and writes
status/{stage}/{source}.json saying which stage failed and why. The next stage reads that status, passes
the failure on without work, and the dataset leaves the source out and lists it. So one broken source
never stops the others, and the whole run stays file-based: Snakemake still recomputes only what is stale.

A failed local source is retried when what it depends on changes (the file appears or is replaced, a
setting or the code changes): Snakemake's own triggers, so an unchanged broken file costs nothing. A URL
job that failed is retried by every run, since the site may be back: its `retry` param (retry_token)
changes with each of its own failures, so Snakemake's params trigger re-plans that job, and
only that one (plus what reads it).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from . import diskfull
from .atomic import read_json, write_json
from .sources import URL_PREFIX

log = logging.getLogger(__name__)

#: config `on_source_error`: "skip" records a failed source and goes on; "stop" fails the run (as before).
POLICIES = ("skip", "stop")
#: Every status file under a working folder (paths.STATUS, paths.URL_STATUS).
STATUS_GLOB = "status/*/*.json"


def read_status(path: str | os.PathLike) -> dict | None:
    """A status file's record, or None where it is missing or unreadable (never run, or killed)."""
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "ok" in record else None


def failure_id_file(status: str | os.PathLike) -> Path:
    """Beside a status file, not a declared output (Snakemake removes those before a job runs): the id of
    the job's last own failure, which the next run's `retry` param reads."""
    return Path(status).with_suffix(".failure")


def retry_token(status: str | os.PathLike) -> str:
    """The `retry` param of a URL job whose status file is `status`: the id of its last own failure.

    Snakemake records the param a job ran with. A new failure writes a new id, so the next run sees the
    param changed and re-runs the job; a success keeps the id it ran with, so nothing changes after it.
    """
    try:
        return failure_id_file(status).read_text().strip()
    except OSError:
        return ""


def failure_of(statuses: Iterable[str | os.PathLike]) -> dict | None:
    """The first failed record among `statuses` (upstream stages first), or None when all are ok."""
    for path in statuses:
        record = read_status(path)
        if record is None:
            return {"ok": False, "stage": "unknown", "reason": f"{path} is missing or unreadable — re-run that job"}
        if not record["ok"]:
            return record
    return None


def _placeholders(files: Iterable[str | os.PathLike], dirs: Iterable[str | os.PathLike], failure: dict) -> None:
    """Empty outputs in place of a failed job's (Snakemake needs every declared output to exist)."""
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
        Path(d).mkdir(parents=True, exist_ok=True)
    for f in files:
        Path(f).parent.mkdir(parents=True, exist_ok=True)
        if str(f).endswith(".json"):
            write_json(f, {"failed": failure})
        else:
            Path(f).unlink(missing_ok=True)
            Path(f).touch()


def run_source_stage(stage: str, source: str, body: Callable[[], object], *, status: str | os.PathLike,
                     files: Iterable[str | os.PathLike] = (), dirs: Iterable[str | os.PathLike] = (),
                     upstream: Iterable[str | os.PathLike] = (), policy: str = "skip") -> dict:
    """Run one source's `stage` (`body`), or pass on an upstream failure; write its status and return it.

    `files`/`dirs` are the job's outputs, which become placeholders when the source failed. With policy
    "stop" an error propagates as before (the job, and so the run, fails).
    """
    files, dirs = list(files), list(dirs)
    upstream_failure = failure_of(upstream)
    if upstream_failure is not None:
        record = {"ok": False, "source": source, "stage": upstream_failure["stage"],
                  "reason": upstream_failure["reason"], "upstream": True}
        log.warning("%s: source %s skipped — it failed in %s: %s", stage, source, record["stage"], record["reason"])
        _placeholders(files, dirs, record)
    else:
        try:
            body()
        except Exception as err:  # any failure of one source: recorded, never the others' end
            if policy == "stop" or diskfull.is_disk_full(err, [*files, *dirs]):
                raise  # a full disk is no source's fault: every job after it would fail the same way
            record = {"ok": False, "source": source, "stage": stage, "reason": str(err) or type(err).__name__,
                      "error": type(err).__name__, "failure": uuid.uuid4().hex}
            Path(status).parent.mkdir(parents=True, exist_ok=True)
            failure_id_file(status).write_text(record["failure"] + "\n")
            log.error("%s: source %s failed and is left out (on_source_error: skip): %s",
                      stage, source, record["reason"], exc_info=not isinstance(err, _expected_errors()))
            _placeholders(files, dirs, record)
        else:
            record = {"ok": True, "source": source, "stage": stage}
    write_json(status, record)
    return record


def _expected_errors() -> tuple[type[BaseException], ...]:
    from .errors import XttsflowError

    return (XttsflowError,)


def failure_lines(root: str | os.PathLike = ".") -> list[str]:
    """One line per source whose own stage failed (status files under `root`), for the end of a run."""
    lines = []
    for path in sorted(Path(root).glob(STATUS_GLOB)):
        record = read_status(path)
        if record and not record["ok"] and not record.get("upstream"):
            url = str(record.get("source", "")).startswith(URL_PREFIX)
            again = "the next run retries it" if url else "fix it, and the next run retries it"
            lines.append(f"xttsflow: source {record.get('source', path.stem)} failed in {record['stage']} and is "
                         f"left out ({again}): {record['reason']}")
    return lines
