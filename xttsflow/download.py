"""URL sources through yt-dlp's Python API: list a URL's media entries, then fetch one entry to FLAC.

No shell is involved: URLs and options reach yt_dlp.YoutubeDL as Python values. The download archive
(yt-dlp's format: one `<extractor> <id>` line per item) together with the cache of original downloads
lets a re-run convert again from disk, with no network traffic at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import yt_dlp
from yt_dlp.extractor import get_info_extractor
from yt_dlp.utils import make_archive_id, unsmuggle_url, url_basename

from .atomic import read_json, write_json
from .audio import probe
from .errors import XttsflowError
from .jsruntime import require_youtube_support, runtime_option
from .options import IngestConfig
from .raw import write_raw
from .sources import slug, url_entry_id, url_source_id

log = logging.getLogger(__name__)
T = TypeVar("T")

#: yt-dlp format selection per `ingest.audio_quality`. "Nk" is the best audio at or under N kbit/s
#: (`?` keeps formats whose bitrate is unknown), else the leanest audio, else anything with sound.
FORMATS = {
    "best": "bestaudio/best",
    "128k": "bestaudio[abr<=?128]/worstaudio/best",
    "64k": "bestaudio[abr<=?64]/worstaudio/best",
}
#: Files yt-dlp leaves while a download is unfinished.
PARTIAL_SUFFIXES = (".part", ".ytdl", ".temp", ".tmp")
#: Nested playlists (a channel's tabs) are expanded this deep, no deeper.
MAX_NESTING = 2


class _YtdlpLog:
    """yt-dlp's logger interface on top of `logging` (it sends ordinary progress lines to debug)."""

    def debug(self, msg: str) -> None:
        if msg.startswith("[debug] "):
            log.debug("%s", msg[8:])
        else:
            log.info("%s", msg)

    def info(self, msg: str) -> None:
        log.info("%s", msg)

    def warning(self, msg: str) -> None:
        log.warning("%s", msg)

    def error(self, msg: str) -> None:
        log.error("%s", msg)


def _options(cfg: IngestConfig, **extra) -> dict:
    return {
        "logger": _YtdlpLog(),
        "js_runtimes": runtime_option(cfg.js_runtime),
        "quiet": True,
        "noprogress": True,
        "cachedir": False,
        "socket_timeout": cfg.socket_timeout,
        # Our own loop retries whole attempts with backoff; yt-dlp's inner retries would multiply them.
        "retries": 0,
        "extractor_retries": 0,
        "fragment_retries": cfg.retries,
        **extra,
    }


@contextlib.contextmanager
def _cookies(cfg: IngestConfig):
    """yt-dlp's `cookiefile` option: a private copy of ingest.cookies_file (yt-dlp writes the jar back on
    exit, and concurrent jobs would garble the user's own file). The path and content are never logged."""
    if not cfg.cookies_file:
        yield {}
        return
    if not Path(cfg.cookies_file).is_file():
        raise XttsflowError(f"ingest.cookies_file: {cfg.cookies_file} is not a file — export your browser's "
                            "cookies in Netscape format (docs/ingest.md) or remove the option")
    with tempfile.TemporaryDirectory(prefix="xttsflow-cookies-") as folder:
        copy = Path(folder) / "cookies.txt"
        shutil.copyfile(cfg.cookies_file, copy)
        os.chmod(copy, 0o600)
        yield {"cookiefile": str(copy)}


# ---------------------------------------------------------------- resolve: URL -> entries

def resolve_url(url: str, out: str | Path, cfg: IngestConfig) -> dict:
    """List the media items behind `url` (one for a plain media URL) and write them to `out` atomically."""
    url_id = url_source_id(url)
    where = f"ingest: URL source {url_id} ({url})"
    info, attempts = _flat_info(url, cfg, where)
    entries, seen = [], set()
    for entry in _entries(info, url, cfg, depth=0, where=where):
        entry["id"] = url_entry_id(url_id, entry["entry_id"])
        if entry["id"] not in seen:  # a playlist may list one video twice
            seen.add(entry["id"])
            entries.append(entry)
    if not entries:
        raise XttsflowError(f"{where}: lists no media — check the URL (an empty or private playlist?)")
    result = {"url": url, "id": url_id, "title": info.get("title"),
              "extractor": info.get("extractor_key"), "entries": entries}
    write_json(out, result)
    log.info("%s: %d entr%s after %d attempt(s)", where, len(entries), "y" if len(entries) == 1 else "ies", attempts)
    return result


def _entries(info: dict, url: str, cfg: IngestConfig, depth: int, where: str) -> list[dict]:
    if info.get("_type") not in ("playlist", "multi_video"):
        return [_entry(info, url, None, info.get("extractor_key"))]
    found = []
    for index, item in enumerate(info.get("entries") or [], start=1):
        if item is None:  # yt-dlp's placeholder for an unavailable item
            continue
        nested = _nested_playlist_url(item)
        if nested and depth < MAX_NESTING:
            found += _entries(_flat_info(nested, cfg, f"{where} (nested playlist {nested})")[0], nested, cfg,
                              depth + 1, where)
        else:
            found.append(_entry(item, url, index, info.get("extractor_key")))
    return found


def _flat_info(url: str, cfg: IngestConfig, where: str) -> tuple[dict, int]:
    """yt-dlp's flat listing of `url` (playlist items are named, not fetched), with retries."""
    with _cookies(cfg) as cookies:
        opts = _options(cfg, extract_flat="in_playlist", skip_download=True, ignore_no_formats_error=True,
                        **cookies)

        def attempt() -> dict:
            with yt_dlp.YoutubeDL(opts) as ydl:
                require_youtube_support(ydl, url, where)
                return ydl.sanitize_info(ydl.extract_info(url, download=False))

        return _with_retries(attempt, cfg, where)


def _nested_playlist_url(item: dict) -> str | None:
    """The URL of an entry that is itself a playlist (a YouTube channel lists its tabs like this)."""
    if item.get("_type") == "playlist":
        return item.get("webpage_url") or item.get("url")
    if item.get("_type") not in ("url", "url_transparent") or not item.get("ie_key"):
        return None
    try:
        kind = get_info_extractor(item["ie_key"])._RETURN_TYPE
    except (AttributeError, KeyError):
        return None
    return item["url"] if kind == "playlist" or item["ie_key"] == "YoutubeTab" else None


def _entry(item: dict, parent_url: str, index: int | None, parent_extractor: str | None) -> dict:
    """One downloadable item: how to fetch it again, and the archive key it is recorded under."""
    if item.get("_type") in ("url", "url_transparent"):
        # A flat reference: fetch its own URL. Podcast feeds give no id, only a smuggled one or the file name.
        fetch_url, index = item["url"], None
        smuggled = unsmuggle_url(fetch_url, {})[1]
        entry_id = item.get("id") or smuggled.get("force_videoid") or _id_from_url(fetch_url)
        # Without a named extractor yt-dlp's generic one fetches it (and records it as "generic <id>").
        extractor = item.get("ie_key") or "Generic"
    else:
        # A fully extracted item: a single media URL, or one of several media inside one page, which
        # is fetched again as item `index` of that page.
        entry_id, extractor = str(item["id"]), item.get("extractor_key") or parent_extractor or "Generic"
        fetch_url = parent_url if index is not None else (item.get("webpage_url") or parent_url)
    duration = item.get("duration")
    return {
        "entry_id": str(entry_id),
        "url": fetch_url,
        "playlist_index": index,
        "title": item.get("title"),
        "duration": float(duration) if duration else None,
        "live": bool(item.get("is_live")),
        "extractor": extractor,
        "archive_id": make_archive_id(extractor, str(entry_id)),
    }


def _id_from_url(url: str) -> str:
    name = url_basename(unsmuggle_url(url, {})[0]).rsplit(".", 1)[0]
    return name or slug(urlsplit(url).netloc)


# ---------------------------------------------------------------- ingest one entry

def read_entry(entries_file: str | Path, source_id: str) -> dict:
    """The entry `source_id` of a resolve_url output."""
    for entry in read_json(entries_file)["entries"]:
        if entry["id"] == source_id:
            return entry
    raise XttsflowError(f"ingest: {entries_file} lists no entry {source_id!r} — re-run resolve_url for its URL")


def ingest_url(source: dict, entry: dict, flac: str | Path, info: str | Path, cfg: IngestConfig) -> dict:
    """Fetch one entry (or reuse its archived download) -> FLAC + JSON record; raises XttsflowError."""
    where = f"ingest: source {source['id']} ({entry['url']})"
    _refuse_if_too_long(entry.get("duration"), entry.get("live"), cfg, where)
    archive = DownloadArchive(cfg.archive)
    cache = Path(cfg.download_dir) / source["id"]
    if entry["archive_id"] in archive:
        media_path = cached_download(cache)
        if media_path is None:
            raise XttsflowError(
                f"{where}: already downloaded (line {entry['archive_id']!r} of the download archive "
                f"{cfg.archive}) but its copy in {cache}/ is gone — delete that line to download it again"
            )
        fetched = _read_fetch_record(cache) | {"downloaded": False, "attempts": 0}
        log.info("%s: in the download archive, converting %s again without downloading", where, media_path)
    else:
        media_path, fetched = _download(entry, cache, cfg, where)
    try:
        media = probe(media_path)
    except XttsflowError as err:
        raise XttsflowError(f"{where}: the download is not usable audio ({err})") from None
    try:
        _refuse_if_too_long(media["duration"], False, cfg, where)
    except XttsflowError:
        if fetched["downloaded"]:
            media_path.unlink(missing_ok=True)  # don't keep what we refuse
        raise
    how = {"method": "yt-dlp", "yt_dlp_version": yt_dlp.version.__version__, "entry_id": entry["entry_id"],
           "url": entry["url"], "archive_id": entry["archive_id"], **fetched}
    record = write_raw(media_path, media, flac, info, source, how, where)
    archive.add(entry["archive_id"])  # only once the FLAC and its record exist
    return record


def _refuse_if_too_long(duration: float | None, live: bool | None, cfg: IngestConfig, where: str) -> None:
    if live:
        raise XttsflowError(f"{where}: is a live stream (it has no end) — add it once the broadcast is over")
    if duration and duration > cfg.max_duration:
        raise XttsflowError(
            f"{where}: lasts {duration:.0f} s, longer than ingest.max_duration ({cfg.max_duration:.0f} s) — "
            "raise ingest.max_duration to accept it, or remove it from sources (media is never cut silently)"
        )


def _download(entry: dict, cache: Path, cfg: IngestConfig, where: str) -> tuple[Path, dict]:
    with _cookies(cfg) as cookies:
        return _download_with(entry, cache, cfg, where, cookies)


def _download_with(entry: dict, cache: Path, cfg: IngestConfig, where: str, cookies: dict) -> tuple[Path, dict]:
    index = entry.get("playlist_index")
    opts = _options(
        cfg,
        **cookies,
        format=FORMATS[cfg.audio_quality],
        outtmpl={"default": str(cache / "media.%(ext)s")},
        noplaylist=index is None,
        playlist_items=str(index) if index is not None else None,
        continuedl=True,  # a retry (or a re-run after a kill) resumes the .part file
        overwrites=False,
    )

    def attempt() -> tuple[Path, dict]:
        with yt_dlp.YoutubeDL(opts) as ydl:
            require_youtube_support(ydl, entry["url"], where)
            info = ydl.extract_info(entry["url"], download=False)
            if info.get("_type") in ("playlist", "multi_video"):
                items = [e for e in info.get("entries") or [] if e]
                if len(items) != 1:
                    raise XttsflowError(f"{where}: is itself a playlist of {len(items)} items — list its URL "
                                        "in config `sources` instead")
                info = items[0]
            _refuse_if_too_long(info.get("duration"), info.get("is_live"), cfg, where)
            done = ydl.process_ie_result(info, download=True)
        path = Path(done["requested_downloads"][0]["filepath"])
        return path, {
            "downloaded": True,
            "title": entry.get("title") or done.get("title"),  # a feed's episode title beats a file name
            "extractor": done.get("extractor_key"),
            "format_id": done.get("format_id"),
            "ext": done.get("ext"),
            "acodec": done.get("acodec"),
            "abr": done.get("abr"),
            "webpage_url": done.get("webpage_url"),
        }

    (path, fetched), attempts = _with_retries(attempt, cfg, where)
    fetched["attempts"] = attempts
    write_json(cache / "fetch.json", {k: v for k, v in fetched.items() if k not in ("downloaded", "attempts")})
    return path, fetched


def cached_download(cache: Path) -> Path | None:
    """The complete original download in `cache`, if any (yt-dlp renames .part files only when done)."""
    if not cache.is_dir():
        return None
    found = [p for p in sorted(cache.glob("media.*")) if p.suffix not in PARTIAL_SUFFIXES]
    return found[0] if found else None


def _read_fetch_record(cache: Path) -> dict:
    try:
        return read_json(cache / "fetch.json")
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- retries and errors

def _with_retries(fn: Callable[[], T], cfg: IngestConfig, where: str) -> tuple[T, int]:
    """Run `fn`; retry transient network errors with exponential backoff. Returns (result, attempts)."""
    for attempt in range(cfg.retries + 1):
        try:
            return fn(), attempt + 1
        except XttsflowError:
            raise
        except (yt_dlp.utils.YoutubeDLError, OSError) as err:
            transient = _is_transient(err)
            if not transient or attempt == cfg.retries:
                raise XttsflowError(f"{where}: {_explain(err)} (after {attempt + 1} attempt(s))") from None
            delay = cfg.backoff_s * 2**attempt
            log.warning("%s: %s — retrying in %.1f s (%d/%d)", where, _reason(err), delay, attempt + 1, cfg.retries)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _chain(err: BaseException):
    """The exception and everything it wraps (yt-dlp nests them in exc_info, cause and __cause__)."""
    seen = []
    while err is not None and err not in seen and len(seen) < 10:
        seen.append(err)
        wrapped = getattr(err, "exc_info", None)
        err = (wrapped[1] if wrapped and wrapped[1] is not err else None) or getattr(err, "cause", None) \
            or err.__cause__ or err.__context__
    return seen


def _http_status(err: BaseException) -> int | None:
    for e in _chain(err):
        status = getattr(e, "status", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
    return None


def _is_transient(err: BaseException) -> bool:
    status = _http_status(err)
    if status is not None:
        return status >= 500 or status in (408, 425, 429)
    return any(isinstance(e, (ConnectionError, TimeoutError, yt_dlp.networking.exceptions.TransportError))
               for e in _chain(err))


def _reason(err: BaseException) -> str:
    text = str(err).removeprefix("ERROR: ")
    return text.split(" (caused by", 1)[0].strip()


def _explain(err: BaseException) -> str:
    status = _http_status(err)
    if status in (404, 410):
        return (f"the server answered HTTP {status} (not found) — check the URL (the media may have been "
                "removed or made private) or remove it from sources")
    if status in (401, 403):
        return (f"the server refused access (HTTP {status}) — the media may be private, region-locked "
                "or need a login; remove it from sources")
    if status is not None:
        return f"the server answered HTTP {status} — try again later, or remove it from sources"
    if any(isinstance(e, ConnectionRefusedError) for e in _chain(err)):
        return "the connection was refused — check the URL (host and port) and your network, then re-run"
    if _is_transient(err):
        return f"the network failed ({_reason(err)}) — check your connection, then re-run"
    return f"yt-dlp could not fetch it ({_reason(err)}) — check the URL or remove it from sources"


# ---------------------------------------------------------------- download archive

class DownloadArchive:
    """yt-dlp's download archive file, safe for many concurrent jobs (POSIX record locks; NFS too)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def keys(self) -> set[str]:
        if not self.path.exists():
            return set()
        with open(self.path, encoding="utf-8") as f, _locked(f, fcntl.LOCK_SH):
            return {line.strip() for line in f if line.strip()}

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def add(self, key: str) -> None:
        """Append `key` once; whole lines only, so readers never see half a key."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as f, _locked(f, fcntl.LOCK_EX):
            f.seek(0)
            if key in {line.strip() for line in f}:
                return
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def _locked(f, mode: int):
    fcntl.lockf(f.fileno(), mode)
    try:
        yield
    finally:
        fcntl.lockf(f.fileno(), fcntl.LOCK_UN)
