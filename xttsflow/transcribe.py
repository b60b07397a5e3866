"""Stage 3: transcribe one source's segments with Whisper and screen them -> transcripts/{source}.json.

The transcript holds the text, Whisper's confidence figures, word timestamps and hallucination flags per
segment. The recognisers are in xttsflow.asr (one module per backend, behind one interface); on GPU a job
runs as many model workers as fit in free VRAM (xttsflow.asr.workers).
`xttsflow transcribe` runs it on a segments manifest, or on audio files and folders.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import typing
from pathlib import Path

from . import cli
from .asr import BACKENDS
from .asr.config import TranscribeConfig
from .asr.workers import transcribe_files
from .atomic import read_json, write_json
from .audio import AUDIO_EXTENSIONS, probe
from .errors import XttsflowError
from .hallucination import ScreenConfig, flag_name, screen
from .journal import Journal
from .languages import AUTO, vote

log = logging.getLogger(__name__)


def _annotate(items: list[dict], results: dict[str, dict], language: str | None,
              cfg: ScreenConfig) -> tuple[list[dict], dict[str, int]]:
    """Transcript entries ({id, file, duration} + result + flags) in `items` order, and the count per flag."""
    entries, flag_counts = [], {}
    for item in items:
        result = results[item["id"]]
        duration = float(item.get("duration", 0.0))
        flags = screen(result, duration, language, cfg)
        for flag in flags:
            flag_counts[flag_name(flag)] = flag_counts.get(flag_name(flag), 0) + 1
        entries.append({"id": item["id"], "file": item["file"], "duration": duration, **result, "flags": flags})
    return entries, flag_counts


def transcribe_source(manifest: str | os.PathLike, segments_dir: str | os.PathLike, out: str | os.PathLike,
                      cfg: TranscribeConfig, language: str | None = None, threads: int = 1) -> dict:
    """Transcribe and screen every segment of one source; writes transcripts/{source}.json atomically."""
    from tqdm import tqdm

    manifest, segments_dir, out = Path(manifest), Path(segments_dir), Path(out)
    info = read_json(manifest)
    source = info.get("source", manifest.stem)
    language = cfg.language or language or info.get("language")
    auto = language == AUTO  # each clip is decoded in the language detected on it; the source's is voted below
    segments = info.get("segments", [])
    missing = [s["file"] for s in segments if not (segments_dir / s["file"]).is_file()]
    if missing:
        raise XttsflowError(f"transcribe: {len(missing)} segment file(s) listed in {manifest} are missing from "
                            f"{segments_dir} (first: {missing[0]}) — delete {manifest} and re-run the segment stage")
    journal = Journal(out.parent / f".{out.name}.journal.jsonl", cfg.fingerprint(language))
    todo = [s for s in segments if s["id"] not in journal.done]
    if journal.done:
        log.info("transcribe: %s: resuming, %d of %d segments already done", source, len(journal.done), len(segments))

    start = time.perf_counter()
    run = {"backend": cfg.backend, "model": cfg.model, "version": None}
    try:
        if todo:
            with tqdm(total=len(todo), unit="seg", desc=source, file=sys.stderr, mininterval=2.0) as bar:
                def done(i: int, result: dict) -> None:
                    journal.add(todo[i]["id"], result)
                    bar.update(1)

                _, run = transcribe_files([segments_dir / s["file"] for s in todo], None if auto else language, cfg,
                                          threads, done)
    except BaseException:
        journal.close(remove=False)
        raise
    seconds = time.perf_counter() - start

    detection = None
    if auto:
        detection = vote([(journal.done[s["id"]].get("language"), journal.done[s["id"]].get("language_probability"),
                           float(s.get("duration", 0.0))) for s in segments if s["id"] in journal.done])
        language = detection["language"]
        log.info("transcribe: %s: language auto -> %s (%s)", source, language, detection["scores"])
    entries, flag_counts = _annotate(segments, journal.done, language, cfg.screen)
    audio_s = sum(float(s.get("duration", 0.0)) for s in todo)
    speed = audio_s / seconds if seconds > 0 and todo else None
    if todo:
        log.info("transcribe: %s: %d segments, %.1f s of audio in %.1f s (%.1fx real time) — %s %s on %s, "
                 "%s worker(s), %d thread(s)", source, len(todo), audio_s, seconds, speed, cfg.backend,
                 cfg.model, run.get("device"), run.get("workers"), threads)
    stats = {"segments": len(segments), "flagged": sum(1 for e in entries if e["flags"]), "flags": flag_counts,
             "empty_text": sum(1 for e in entries if not e["text"]), "audio_seconds": round(audio_s, 3),
             "transcribe_seconds": round(seconds, 3), "realtime_factor": round(speed, 2) if speed else None,
             "resumed": len(segments) - len(todo), "device": run.get("device"), "workers": run.get("workers"),
             "threads": threads}
    if run["version"] is None:  # nothing left to decode (all resumed, or no segments): name the installed backend
        run["version"] = BACKENDS[cfg.backend].version()
    write_json(out, {"source": source, "speaker": info.get("speaker"), "language": language,
                     **({"language_detection": detection} if auto else {}),
                     "backend": run["backend"], "model": run["model"], "backend_version": run["version"],
                     "config": cfg.model_dump(mode="json"), "segments": entries, "stats": stats})
    journal.close(remove=True)
    return stats


def transcribe_audio(paths: list[str | os.PathLike], cfg: TranscribeConfig, language: str | None = None,
                     threads: int = 1) -> dict:
    """Transcribe and screen audio files of any format: a transcript without a source (ids are the paths)."""
    language = cfg.language or language
    items = []
    for path in map(str, paths):
        try:
            duration = probe(path)["duration"] or 0.0
        except XttsflowError:
            duration = 0.0  # the transcriber reports the unreadable file in its result, as for a segment
        items.append({"id": path, "file": path, "duration": duration})
    start = time.perf_counter()
    results, run = transcribe_files([it["file"] for it in items], language, cfg, threads) if items else ([], {})
    seconds = time.perf_counter() - start
    entries, flag_counts = _annotate(items, {it["id"]: r for it, r in zip(items, results, strict=True)}, language,
                                     cfg.screen)
    stats = {"files": len(entries), "flagged": sum(1 for e in entries if e["flags"]), "flags": flag_counts,
             "empty_text": sum(1 for e in entries if not e["text"]),
             "audio_seconds": round(sum(it["duration"] for it in items), 3), "transcribe_seconds": round(seconds, 3),
             "device": run.get("device"), "workers": run.get("workers"), "threads": threads}
    return {"language": language, "backend": cfg.backend, "model": cfg.model,
            "backend_version": BACKENDS[cfg.backend].version(), "config": cfg.model_dump(mode="json"),
            "segments": entries, "stats": stats}


def audio_files(inputs: list[str]) -> list[Path]:
    """Files as given and the audio files of folders (recursive, sorted)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise XttsflowError(f"{item} holds no {'/'.join(AUDIO_EXTENSIONS)} file")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise XttsflowError(f"{item}: no such file or folder")
    return files


def _option_flags(parser) -> None:
    """One flag per `transcribe:` option (not the screen), its default and choices taken from TranscribeConfig."""
    import argparse

    defaults = TranscribeConfig()
    for name, field in TranscribeConfig.model_fields.items():
        if name == "screen":
            continue
        value, flag = getattr(defaults, name), "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"default: {value}")
            continue
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else None
        shown = value if value is not None else "unset (a manifest's language; audio files: detected)"
        parser.add_argument(flag, default=None, choices=choices, help=f"default: {shown}")


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser("transcribe", __doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="a segments manifest (segments/{source}.json), or audio files and folders")
    parser.add_argument("-o", "--out", help="the transcript JSON (a manifest's transcripts/{source}.json); "
                                            "for audio files: default stdout")
    parser.add_argument("--segments", help="the manifest's segment folder (default: beside it, without .json)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    _option_flags(parser)
    args = parser.parse_args(argv)
    options = {k: v for k in TranscribeConfig.model_fields if (v := getattr(args, k, None)) is not None}
    cfg = TranscribeConfig(**options)
    manifests = [p for p in args.inputs if p.endswith(".json")]
    if manifests and (len(args.inputs) > 1 or not args.out):
        parser.error("a segments manifest goes alone, with --out transcripts/{source}.json")
    setup_console()
    if manifests:
        segments = args.segments or str(Path(manifests[0]).with_suffix(""))
        stats = transcribe_source(manifests[0], segments, args.out, cfg, threads=args.threads)
        print(json.dumps(stats, indent=2))
        return
    transcript = transcribe_audio(audio_files(args.inputs), cfg, threads=args.threads)
    if args.out:
        write_json(args.out, transcript)
        print(json.dumps(transcript["stats"], indent=2))
    else:
        print(json.dumps(transcript, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(cli.run("transcribe", main))
