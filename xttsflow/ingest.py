"""Stage 1, ingest: a source -> `raw/{source}.flac` (lossless FLAC) + `raw/{source}.json` (what and how).

Local files are probed here; URL sources are fetched by xttsflow.download (yt-dlp); both are re-encoded,
checked for truncation and recorded by xttsflow.raw.write_raw.
`python -m xttsflow.ingest PATH_OR_URL... --out DIR` runs the stage on its own.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from pathlib import Path

from . import cli
from .audio import probe
from .errors import XttsflowError
from .logs import setup_console
from .options import AUDIO_QUALITIES, IngestConfig, parse
from .raw import write_raw
from .sources import Source, expand_local, local_source_id, url_source_id

log = logging.getLogger(__name__)

#: What Snakemake would expand in an input path, with no escape for either: `{wildcards}`, and since
#: Snakemake 9 `<pathvars>` (`x<h>y.wav` stops the whole DAG with "Undefined pathvar 'h'").
EXPANDED = re.compile(r"\{[^{}]*\}|<[a-z][a-z0-9_]*>")


def present(path: str) -> list[str]:
    """`[path]` if it is a file, else `[]`: a missing recording fails its own job, not the whole DAG.

    Snakemake reads `{name}` in an input path as a wildcard and `<name>` as a path variable, with no escape
    for either, so such a file is ingested without being an input (editing it later does not re-run it).
    """
    if EXPANDED.search(path):
        return []
    return [path] if Path(path).is_file() else []


def ingest_local(source: dict, flac: str | Path, info: str | Path) -> dict:
    """One local recording -> FLAC + JSON record. Raises XttsflowError naming the source; leaves no output."""
    where = f"ingest: source {source['id']} ({source['location']})"
    path = Path(source["location"])
    if not path.exists():
        raise XttsflowError(f"{where}: the file does not exist — fix the path in config `sources` or remove it")
    if not path.is_file():
        raise XttsflowError(f"{where}: not a regular file — list a file, a folder or a glob in config `sources`")
    try:
        media = probe(path)
    except XttsflowError as err:  # probe's message already names the file
        raise XttsflowError(f"ingest: source {source['id']}: {err}") from None
    return write_raw(path, media, flac, info, source, {"method": "local-file", "sha256": _sha256(path)}, where)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


URL_RE = re.compile(r"^https?://", re.IGNORECASE)


def ingest_any(inputs: list[str], out_dir: Path, speaker: str, language: str,
               cfg: IngestConfig) -> tuple[list[dict], list[str]]:
    """Ingest local paths (files, folders, globs) and URLs into `out_dir`: (records, error messages).

    One failure never stops the rest.
    """
    from . import download  # yt-dlp is only imported when a URL needs it

    records, failures = [], []
    for item in inputs:
        try:
            if URL_RE.match(item):
                url_id = url_source_id(item)
                resolved = download.resolve_url(item, out_dir / "sources" / f"{url_id}.json", cfg)
                jobs = [(Source(e["id"], "url", item, speaker, language).as_dict(), e) for e in resolved["entries"]]
            else:
                paths = expand_local(item)
                jobs = [(Source(local_source_id(p), "local", p, speaker, language).as_dict(), None) for p in paths]
        except XttsflowError as err:
            failures.append(str(err))
            continue
        for source, entry in jobs:
            flac, info = out_dir / f"{source['id']}.flac", out_dir / f"{source['id']}.json"
            try:
                if entry is None:
                    records.append(ingest_local(source, flac, info))
                else:
                    records.append(download.ingest_url(source, entry, flac, info, cfg))
            except XttsflowError as err:
                failures.append(str(err))
    return records, failures


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser(
        "ingest", "Ingest local recordings and/or URLs (yt-dlp) into DIR/<source>.flac + DIR/<source>.json.")
    parser.add_argument("inputs", nargs="+", help="audio files, folders (recursive), globs or http(s) URLs")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--speaker", default="speaker", help="speaker name recorded in the JSON")
    parser.add_argument("--language", default="pt", help="language code recorded in the JSON")
    defaults = IngestConfig()
    parser.add_argument("--audio-quality", choices=AUDIO_QUALITIES, default=defaults.audio_quality)
    parser.add_argument("--max-duration", type=float, default=defaults.max_duration,
                        help="refuse media longer than this many seconds")
    parser.add_argument("--retries", type=int, default=defaults.retries)
    parser.add_argument("--backoff", type=float, default=defaults.backoff_s, help="first retry delay (doubles)")
    parser.add_argument("--archive", help="download archive file (default: OUT/download-archive.txt)")
    parser.add_argument("--download-dir", help="cache of original downloads (default: OUT/downloads)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_console(args.verbose)
    cfg = parse(IngestConfig, dict(
        audio_quality=args.audio_quality, max_duration=args.max_duration, retries=args.retries,
        backoff_s=args.backoff, archive=args.archive or str(args.out / "download-archive.txt"),
        download_dir=args.download_dir or str(args.out / "downloads"),
    ))
    records, failures = ingest_any(args.inputs, args.out, args.speaker, args.language, cfg)
    for record in records:
        print(f"{record['source']}\t{record['ingest']['flac']['duration']:.1f} s\t{record['location']}")
    for message in failures:
        log.error("%s", message)
    if failures:
        raise XttsflowError(f"{len(failures)} source(s) failed (errors above); {len(records)} ingested")


if __name__ == "__main__":
    sys.exit(cli.run("ingest", main))
