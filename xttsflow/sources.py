"""The source table: config `sources:` entries -> sources with safe, stable ids.

An id depends only on what the source *is* (its path or URL), never on its place in the config list,
so reordering the list or adding a source never renames (and so never recomputes) another one.
"""

from __future__ import annotations

import glob
import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

from .audio import AUDIO_EXTENSIONS
from .errors import XttsflowError

GLOB_CHARS = re.compile(r"[*?\[]")
#: Ids of URL sources start with this, so their entries never collide with local ids.
URL_PREFIX = "url-"


@dataclass(frozen=True)
class Source:
    id: str
    kind: str  # "local" or "url"
    location: str  # a path (local) or a URL
    speaker: str
    language: str
    reference: str | None = None  # a clip of the target voice (the speaker screen's yardstick); not in the id

    def as_dict(self) -> dict:
        """What the source is (the ingest jobs' params): the reference clip is left out, so that changing it
        re-runs only what reads it (speaker_embed, the dataset), never the ingest."""
        record = asdict(self)
        del record["reference"]
        return record


def slug(text: str, max_len: int = 40) -> str:
    """ASCII, lower case, [a-z0-9-] only: safe in file names, shell words and Snakemake wildcards."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return cleaned[:max_len].strip("-") or "audio"


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def local_source_id(path: str | Path) -> str:
    """`<stem slug>-<hash of the normalised path>`: readable, unique, stable."""
    p = Path(path)
    stem = slug(p.stem)
    if stem == URL_PREFIX.rstrip("-") or stem.startswith(URL_PREFIX):
        # A file called "url ..." must not look like a URL source to the rules' wildcard constraints.
        stem = f"file-{stem}"
    return f"{stem}-{_digest(p.as_posix())}"


def url_source_id(url: str) -> str:
    return f"{URL_PREFIX}{_digest(url.strip())}"


def url_entry_id(url_id: str, entry_id: str) -> str:
    """One media item of a URL source (a playlist entry, or the single item of a plain URL).

    Entry ids that the slug would change (YouTube ids are case-sensitive: "aB" and "Ab" differ) get a
    hash of the original, so two entries never share a source id.
    """
    readable = slug(entry_id, 48)
    if readable != entry_id:
        return f"{url_id}-{readable}-{_digest(entry_id, 6)}"
    return f"{url_id}-{readable}"


def parent_url_id(entry_source_id: str) -> str:
    """The URL source an entry id belongs to: `url-1a2b3c4d-xyz` -> `url-1a2b3c4d`."""
    return "-".join(entry_source_id.split("-", 2)[:2])


def expand_local(pattern: str, base_dir: str | Path = ".") -> list[str]:
    """A file, a folder (recursive) or a glob -> sorted audio files, as paths relative to `base_dir`."""
    base = Path(base_dir)
    target = base / pattern
    if GLOB_CHARS.search(pattern) and not target.is_file():  # "take [2].mp3" is a file, not a glob
        found = [Path(p) for p in glob.glob(str(target), recursive=True)]
        found = [p for p in found if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS]
        if not found:
            raise XttsflowError(
                f"sources: the glob {pattern!r} matched no {'/'.join(AUDIO_EXTENSIONS)} file — fix the pattern"
            )
    elif target.is_dir():
        found = [p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS]
        if not found:
            raise XttsflowError(f"sources: the folder {pattern!r} holds no {'/'.join(AUDIO_EXTENSIONS)} file")
    else:
        # A single file is kept even if missing or broken: its ingest job then fails with a clear
        # message while the other sources go on (--keep-going).
        return [pattern]
    return sorted(p.relative_to(base).as_posix() if p.is_relative_to(base) else p.as_posix() for p in found)


def _identity(source: Source) -> str:
    """What a source id is a hash of (so "./a.mp3" and "a.mp3" are one source)."""
    return source.location.strip() if source.kind == "url" else Path(source.location).as_posix()


def source_table(config: dict, base_dir: str | Path = ".") -> dict[str, Source]:
    """All local sources and the (unexpanded) URL sources of a validated config, by id."""
    default_language = config.get("default_language", "pt")
    table: dict[str, Source] = {}
    for n, entry in enumerate(config["sources"]):
        speaker, language = entry["speaker"], entry.get("language", default_language)
        reference = _reference(entry, n, base_dir)
        if "url" in entry:
            items = [(url_source_id(entry["url"]), "url", entry["url"])]
        else:
            items = [(local_source_id(p), "local", p) for p in expand_local(entry["path"], base_dir)]
        for sid, kind, location in items:
            source = Source(sid, kind, location, speaker, language, reference)
            previous = table.get(sid)
            if previous and _identity(previous) != _identity(source):
                raise XttsflowError(
                    f"sources[{n}]: {location!r} and {previous.location!r} get the same id {sid!r} "
                    "(a hash collision) — rename one of them"
                )
            if previous and previous.reference != reference:
                raise XttsflowError(f"sources[{n}]: {location!r} is also listed with reference "
                                    f"{previous.reference!r} — give one recording one reference clip")
            if previous and (previous.speaker, previous.language) != (speaker, language):
                raise XttsflowError(
                    f"sources[{n}]: {location!r} is also listed with speaker {previous.speaker!r} / language "
                    f"{previous.language!r} — a recording has one speaker and one language"
                )
            table[sid] = source
    return table


def _reference(entry: dict, n: int, base_dir: str | Path) -> str | None:
    """The entry's reference clip, checked now: a typo should stop the run before any job, not in the dataset."""
    reference = entry.get("reference")
    if reference is None:
        return None
    if not (Path(base_dir) / reference).is_file():
        where = entry.get("url") or entry.get("path")
        raise XttsflowError(f"sources[{n}] ({where}): reference {reference!r} is not a file — fix the path "
                            "(relative to the working directory)")
    return reference
