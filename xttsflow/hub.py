"""Models by name: one downloader for the XTTS base model and the Whisper models (xttsflow.whisper_models).

Every file goes through `download_file`: free disk space is checked first (the message says how much is
needed), progress goes to the job log, an interrupted download resumes from its `.part` file on the next
run (HTTP Range) instead of starting over, the result is verified (size, and the hub's sha256 / git-sha1
ETag or the sha256 in openai-whisper's URL) and only then moved into place. Hub files land in the
Hugging Face cache layout (`$HF_HUB_CACHE/models--org--name/{blobs,snapshots,refs}`), which
huggingface_hub, coqui-tts and faster-whisper read too; `HF_ENDPOINT` selects the hub (a mirror, or a
local stand-in in tests). huggingface_hub's own download throws a partial file away on any error, which
for XTTS-v2's 1.8 GB model.pth means starting over after every dropped connection.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client (the httpx fork it depends on)

from .atomic import write_text
from .errors import XttsflowError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRIES = 3
PROGRESS_EVERY_S = 10.0


class HubUnreachable(XttsflowError):
    """No answer from the hub at all (no network, wrong HF_ENDPOINT), as opposed to an HTTP error."""


@dataclass(frozen=True)
class Remote:
    """One file to fetch: where from, where to, and what it must be."""

    name: str
    url: str
    dest: Path
    size: int | None
    digest: str | None  # "sha256:<hex>" or "git-sha1:<hex>"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_cache() -> Path:
    """Where huggingface_hub keeps its cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _repo_cache(repo_id: str) -> Path:
    """huggingface_hub's cache folder of a model repository."""
    return hub_cache() / f"models--{repo_id.replace('/', '--')}"


# ---------------------------------------------------------------- the hub

def hub_snapshot(repo_id: str, patterns: tuple[str, ...], revision: str = "main", what: str = "model",
                 required: tuple[str, ...] = ()) -> Path:
    """The cached snapshot folder of `repo_id` holding every file matching `patterns`, fetched as needed.

    With HF_HUB_OFFLINE=1, or when the hub cannot be reached, a complete snapshot already in the cache
    is used as it is (an offline node with a copied or shared cache).
    """
    cached = _cached_snapshot(repo_id, revision, required)
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        if cached:
            return cached
        raise XttsflowError(f"{what}: HF_HUB_OFFLINE is set and {hub_cache()} holds no complete {repo_id} — "
                            "fetch it once where there is internet (docs/train.md, 'Offline and cluster use')")
    try:
        names = _repo_files(repo_id, revision, what)
    except HubUnreachable:
        if cached:
            log.warning("%s: the hub is unreachable; using the cached %s", what, cached)
            return cached
        raise
    wanted = sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns))
    missing = [n for n in required if n not in wanted]
    if missing:
        raise XttsflowError(f"{what}: the hub repository {repo_id} ({endpoint()}) has no {', '.join(missing)} "
                            "— is it the right repository?")
    remotes, commit = [], None
    for name in wanted:
        remote, commit = _hub_remote(repo_id, name, commit or revision, what)
        remotes.append(remote)
    repo = _repo_cache(repo_id)
    snapshot = repo / "snapshots" / commit
    fetch_all(remotes, what)
    for remote in remotes:
        link = snapshot / remote.name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(os.path.relpath(remote.dest, link.parent), tmp)
            os.replace(tmp, link)
    if revision != commit:
        write_text(repo / "refs" / revision, commit)
    return snapshot


def _cached_snapshot(repo_id: str, revision: str, required: tuple[str, ...]) -> Path | None:
    """The cache's snapshot of `revision` when it holds every required file, else None."""
    repo = _repo_cache(repo_id)
    ref = repo / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = repo / "snapshots" / commit
    if required and all((snapshot / name).is_file() for name in required):
        return snapshot
    return None


def _repo_files(repo_id: str, revision: str, what: str) -> list[str]:
    """The files of a hub repository at `revision` (the hub's revision-info route)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision)
    except Exception as err:  # noqa: BLE001 (huggingface_hub raises httpx and its own errors)
        raise _hub_error(err, what, f"{repo_id} (revision {revision})") from None
    return [s.rfilename for s in info.siblings or []]


def _hub_remote(repo_id: str, name: str, revision: str, what: str) -> tuple[Remote, str]:
    """A hub file's URL, size and hash (HEAD of resolve/<rev>/<file>: ETag, X-Repo-Commit, Content-Length)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, name, revision=revision, endpoint=endpoint())
    try:
        meta = get_hf_file_metadata(url, endpoint=endpoint())
    except Exception as err:  # noqa: BLE001
        raise _hub_error(err, what, f"{name} of {repo_id}") from None
    etag = (meta.etag or "").strip('"')
    if not meta.commit_hash or not etag:
        raise XttsflowError(f"{what}: {endpoint()} gave no commit or ETag for {name} of {repo_id} — is "
                            "HF_ENDPOINT a Hugging Face hub?")
    kind = "sha256" if re.fullmatch(r"[0-9a-f]{64}", etag) else "git-sha1" if re.fullmatch(r"[0-9a-f]{40}", etag) \
        else None
    blob = _repo_cache(repo_id) / "blobs" / etag
    url = hf_hub_url(repo_id, name, revision=meta.commit_hash, endpoint=endpoint())
    return Remote(name, url, blob, meta.size, f"{kind}:{etag}" if kind else None), meta.commit_hash


def _hub_error(err: Exception, what: str, item: str) -> XttsflowError:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status == 404:
        return XttsflowError(f"{what}: the hub ({endpoint()}) has no {item} (HTTP 404) — check the name; a "
                             "mirror set with HF_ENDPOINT must hold the same repository")
    if status in (401, 403):
        return XttsflowError(f"{what}: the hub refused {item} (HTTP {status}) — the repository may be gated: "
                             "accept its terms on the hub and log in (`hf auth login`, or HF_TOKEN)")
    if status is not None:
        return XttsflowError(f"{what}: the hub answered HTTP {status} for {item} — try again later")
    return _network_error(err, what, item)


def _network_error(err: Exception, what: str, item: str) -> XttsflowError:
    reason = str(err).split("\n", 1)[0] or type(err).__name__
    return HubUnreachable(f"{what}: cannot download {item} ({type(err).__name__}: {reason}) — without internet, "
                         "copy the model folder here and give its path instead of the name (docs/train.md, "
                         "'Offline and cluster use')")


# ---------------------------------------------------------------- downloading

def fetch_all(remotes: list[Remote], what: str) -> None:
    """Download every remote that is not in place yet, after one check of the free space they need."""
    todo = [r for r in remotes if not r.dest.is_file()]
    _check_space(todo, what)
    for remote in todo:
        download_file(remote, what)


def _check_space(todo: list[Remote], what: str) -> None:
    by_device: dict[int, list] = {}
    for remote in todo:
        remote.dest.parent.mkdir(parents=True, exist_ok=True)
        part = _part(remote.dest)
        left = (remote.size or 0) - (part.stat().st_size if part.exists() else 0)
        by_device.setdefault(os.stat(remote.dest.parent).st_dev, [remote.dest.parent, 0])[1] += max(left, 0)
    for folder, needed in by_device.values():
        free = shutil.disk_usage(folder).free
        if needed > free:
            raise XttsflowError(
                f"{what}: not enough disk space in {folder}: the download needs {_mb(needed)} and "
                f"{_mb(free)} are free — free space or point HF_HOME (XDG_CACHE_HOME for openai-whisper) at a "
                "larger disk; nothing was written"
            )


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def download_file(remote: Remote, what: str) -> Path:
    """Fetch one file to `remote.dest`: resumable, verified, atomic; concurrent callers wait for each other."""
    dest = remote.dest
    with _locked(dest.with_name(f".{dest.name}.lock")):
        if dest.is_file():  # another job finished it while we waited
            return dest
        part = _part(dest)
        for attempt in range(RETRIES + 1):
            try:
                _transfer(remote, part, what)
                break
            except (httpx2.TransportError, ConnectionError, TimeoutError) as err:
                have = part.stat().st_size if part.exists() else 0
                if attempt == RETRIES:
                    raise XttsflowError(
                        f"{what}: downloading {remote.name} failed at {_mb(have)} of {_mb(remote.size)} "
                        f"({type(err).__name__}: {err}) after {attempt + 1} attempts — run again to resume "
                        "from there"
                    ) from None
                log.warning("%s: %s interrupted at %s (%s) — resuming in %d s", what, remote.name, _mb(have),
                            type(err).__name__, 2**attempt)
                time.sleep(2**attempt)
        _verify(remote, part, what)
        os.replace(part, dest)
        log.info("%s: %s complete (%s, verified)", what, remote.name, _mb(dest.stat().st_size))
    return dest


def _transfer(remote: Remote, part: Path, what: str) -> None:
    from huggingface_hub.utils import build_hf_headers

    have = part.stat().st_size if part.exists() else 0
    if remote.size is not None and have == remote.size:
        return
    headers = build_hf_headers() if remote.url.startswith(endpoint()) else {}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        with httpx2.stream("GET", remote.url, headers=headers, follow_redirects=True, timeout=30.0) as response:
            if response.status_code == 416 and remote.size is None:
                return  # the part is already whole
            if response.status_code not in (200, 206):
                raise XttsflowError(f"{what}: {remote.url} answered HTTP {response.status_code} for "
                                    f"{remote.name} — check the name or the mirror")
            resumed = response.status_code == 206
            if have and not resumed:
                log.info("%s: the server ignored the resume request; %s starts over", what, remote.name)
            total = remote.size or _total(response, have if resumed else 0)
            with open(part, "ab" if resumed else "wb") as f:
                _copy(response, f, remote.name, have if resumed else 0, total, what)
                f.flush()
                os.fsync(f.fileno())
    except OSError as err:
        if err.errno == errno.ENOSPC:
            part.unlink(missing_ok=True)
            raise XttsflowError(f"{what}: the disk filled up while downloading {remote.name} "
                                f"({_mb(shutil.disk_usage(part.parent).free)} free) — free space and run again; "
                                "the partial file was removed") from None
        raise


def _total(response: httpx2.Response, start: int) -> int | None:
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _copy(response: httpx2.Response, f, name: str, done: int, total: int | None, what: str) -> None:
    started = last = time.monotonic()
    first = done
    for chunk in response.iter_bytes():  # as it arrives: a drop loses at most one read
        f.write(chunk)
        done += len(chunk)
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            rate = (done - first) / max(now - started, 1e-6)
            share = f" ({100 * done / total:.0f}%)" if total else ""
            eta = f", ~{(total - done) / rate:.0f} s left" if total and rate > 0 else ""
            log.info("%s: %s %s of %s%s, %.1f MB/s%s", what, name, _mb(done), _mb(total), share, rate / 1e6, eta)


def _verify(remote: Remote, part: Path, what: str) -> None:
    size = part.stat().st_size
    problem = None
    if remote.size is not None and size != remote.size:
        problem = f"{_mb(size)} instead of {_mb(remote.size)}"
    elif remote.digest:
        kind, expected = remote.digest.split(":", 1)
        actual = _digest(part, kind, size)
        if actual != expected:
            problem = f"{kind} {actual[:12]}… instead of {expected[:12]}…"
    if problem:
        part.unlink(missing_ok=True)
        raise XttsflowError(f"{what}: {remote.name} arrived damaged ({problem}) and was removed — run again")


def _digest(path: Path, kind: str, size: int) -> str:
    digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind == "git-sha1":  # git's blob id: sha1 over a "blob <size>\0" header and the content
        digest.update(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.lockf(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f.fileno(), fcntl.LOCK_UN)


def _mb(n: int | None) -> str:
    return "? MB" if n is None else f"{n / 1e6:.1f} MB"
