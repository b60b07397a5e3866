"""A stale Snakemake lock: a run in this folder was killed (kill -9, power loss) and left its lock behind.

Snakemake then refuses every new run with a long "Directory cannot be locked" message. Its lock files
name no process, so we look for a live Snakemake process working in this folder ourselves; on this machine
only (a run on another node sharing the folder is not visible, so we never remove a lock, we only say).
"""

from __future__ import annotations

import os
from pathlib import Path


def _snakemake_processes_in(folder: Path) -> list[int]:
    """PIDs of Snakemake processes whose working folder is `folder` (Linux /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        names = [os.path.basename(a.decode(errors="ignore")) for a in argv[:3]]
        if cwd == folder and ("snakemake" in names or any(a == b"snakemake" for a in argv[1:3])):
            found.append(int(entry.name))
    return found


def stale_lock_note(folder: str | os.PathLike = ".") -> str | None:
    """One line for the user when `folder` holds a Snakemake lock that no live process here owns."""
    folder = Path(folder).resolve()
    locks = folder / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.glob("*.lock")):
        return None
    if [pid for pid in _snakemake_processes_in(folder) if pid != os.getpid()]:
        return None  # a run is in progress here: the lock is its own
    return ("xttsflow: a previous run in this folder was killed and left Snakemake's lock behind (no "
            "snakemake process runs here now) — run `snakemake --unlock` once, then run again; finished "
            "jobs are not redone, interrupted ones are")
