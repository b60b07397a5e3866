"""A full disk, said the same way by every stage: which output, how much space is free, nothing kept.

The libraries say it in many ways, most of which hide the cause: Python's OSError [Errno 28], FFmpeg's
"No space left on device" (which our decode error would blame on the input), libsndfile's bare "System
error." or "Format not recognised" on a file it could not finish, PyTorch's "[enforce fail at
inline_container.cc] . unexpected pos". Those carry no errno, so a failure counts as a full disk when the
output's file system is in fact (nearly) full.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from .errors import XttsflowError

#: Free space under which an errno-less write failure is taken for a full disk.
NEARLY_FULL_BYTES = 16 * 2**20
_SAYS_FULL = ("No space left on device", "[Errno 28]", "Disk quota exceeded")


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def _existing_folder(path: Path) -> Path:
    path = path.resolve()
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike) -> int:
    return shutil.disk_usage(_existing_folder(Path(path))).free


def is_disk_full(err: BaseException, outputs: Iterable[str | os.PathLike] = ()) -> bool:
    """Whether `err` means that the disk (or quota) is full where `outputs` (or the working folder) go."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(e) for text in _SAYS_FULL):
            return True
    # Our own XttsflowErrors are about the input unless they quote a full disk (above); any other failure,
    # worded or not, on a file system without room left is the disk's.
    if isinstance(err, XttsflowError):
        return False
    folders = [Path(o) for o in outputs] or [Path.cwd()]
    return any(free_bytes(folder) < NEARLY_FULL_BYTES for folder in folders)


def message(outputs: Iterable[str | os.PathLike] = ()) -> str:
    """The one sentence: which output, the free space where it goes, and that nothing half-written was kept."""
    outputs = [str(o) for o in outputs]
    where = outputs[0] if outputs else os.getcwd()
    folder = _existing_folder(Path(where))
    usage = shutil.disk_usage(folder)
    named = ", ".join(outputs[:3]) + (f" and {len(outputs) - 3} more" if len(outputs) > 3 else "")
    return (f"the disk is full: {named or 'the output'} could not be written ({usage.free / 2**20:.1f} MB free of "
            f"{usage.total / 2**30:.1f} GB on the file system of {folder}); nothing half-written was kept — free "
            "space there and run again")
