"""Atomic outputs: write to a temporary name in the same folder, then rename into place.

A crash or a kill at any moment leaves either the old file or the new one, never half of one,
so Snakemake (and our own resume logic) can trust whatever exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
#: Room a temporary name leaves for the real one: ".<name>.<8 random>.tmp" must stay within 255 bytes.
_NAME_BYTES = 200


def _temp_prefix(path: Path) -> str:
    return "." + path.name.encode()[:_NAME_BYTES].decode(errors="ignore") + "."


def _remove_leftovers(path: Path) -> None:
    """Remove the temporaries a killed writer of `path` left (`.<name>.<8 random>.tmp` / `.old`).

    Only one job writes a given output at a time (Snakemake locks outputs), so whatever of this shape
    exists when a writer starts belongs to a writer that is gone.
    """
    stem = glob_escape(_temp_prefix(path)) + "????????"
    for leftover in [*path.parent.glob(stem + ".tmp"), *path.parent.glob(stem + ".old")]:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); outputs get the usual umask-based mode, as open() would give.
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp_path = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp_path, 0o777 & ~_UMASK)
    try:
        yield tmp_path
        if path.exists():
            # Move the old folder aside first so that the swap itself is a single rename.
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp_path, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)


def link_or_copy(src: str | os.PathLike, dest: str | os.PathLike) -> str:
    """Hard-link `src` at `dest` (big files shared, not copied), or copy it across file systems: which one it did."""
    try:
        # Linux's link() links a symlink itself (the hub cache's snapshot files are symlinks): link its target.
        os.link(os.path.realpath(src), dest)
        return "hardlink"
    except OSError:  # another filesystem, or links not allowed: a copy is as good, only bigger
        shutil.copy2(src, dest)
        return "copy"


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON atomically, with sorted keys so that equal data gives byte-identical files."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike):
    """A JSON file another job wrote; an empty, cut-short or garbled one is an XttsflowError naming its rule."""
    from . import paths
    from .errors import XttsflowError

    with open(path, "rb") as f:
        data = f.read()
    if not data.strip():
        raise XttsflowError(paths.damaged(path, "empty"))
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise XttsflowError(paths.damaged(path, f"not valid JSON: {err}")) from None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
