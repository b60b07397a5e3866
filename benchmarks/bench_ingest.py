"""Ingest speed on a 10-minute recording, next to the bare tools it is built on.

Local: `xttsflow.ingest.ingest_local` (probe, FLAC re-encode, truncation check, sha256, JSON record) against
one bare `ffmpeg -i in.mp3 out.flac`. URL: `xttsflow.download` (yt-dlp over a loopback HTTP server,
download archive, FLAC) against a bare urllib download plus the same ffmpeg call; and the re-run that
the download archive turns into a conversion with no network at all. Prints times, x real time and ratios.

    .venv/bin/python benchmarks/bench_ingest.py [--minutes 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

from xttsflow.download import ingest_url, resolve_url
from xttsflow.ingest import IngestConfig, ingest_local
from xttsflow.sources import Source, local_source_id


def make_recording(folder: Path, minutes: float) -> Path:
    """Speech-like audio (noise bursts with pauses) as a 96 kbit/s stereo mp3."""
    rate, rng = 44100, np.random.default_rng(0)
    n = int(minutes * 60 * rate)
    envelope = (np.sin(np.arange(n) / rate * 2 * np.pi * 0.3) > -0.2).astype(np.float32)
    audio = (rng.standard_normal((n, 2)) * 0.1 * envelope[:, None]).astype(np.float32)
    wav = folder / "talk.wav"
    sf.write(wav, audio, rate, subtype="PCM_16")
    mp3 = folder / "talk.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", "96k",
                    str(mp3)], check=True)
    wav.unlink()
    return mp3


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def handle(self):
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # yt-dlp may read only the headers
            super().handle()


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_ffmpeg(src: Path, dest: Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c:a", "flac", str(dest)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mp3 = make_recording(tmp, args.minutes)
        src = Source(local_source_id(mp3), "local", str(mp3), "bench", "en").as_dict()

        t_bare = best_of(args.repeats, lambda: bare_ffmpeg(mp3, tmp / "bare.flac"))
        t_local = best_of(args.repeats, lambda: ingest_local(src, tmp / "ours.flac", tmp / "ours.json"))

        handler = functools.partial(QuietHandler, directory=str(tmp))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/talk.mp3"

        def bare_url():
            with urllib.request.urlopen(url) as r, open(tmp / "got.mp3", "wb") as f:
                shutil.copyfileobj(r, f)
            bare_ffmpeg(tmp / "got.mp3", tmp / "bare-url.flac")

        runs = iter(range(10**6))

        def ours_url():  # a fresh archive and cache each time: a real download every run
            n = next(runs)
            cfg = IngestConfig(archive=str(tmp / f"a{n}.txt"), download_dir=str(tmp / f"dl{n}"), retries=0)
            entry = resolve_url(url, tmp / f"s{n}.json", cfg)["entries"][0]
            source = {**src, "id": entry["id"], "kind": "url", "location": url}
            ingest_url(source, entry, tmp / "url.flac", tmp / "url.json", cfg)
            return cfg, entry, source

        t_bare_url = best_of(args.repeats, bare_url)
        t_url = best_of(args.repeats, ours_url)
        cfg, entry, source = ours_url()
        t_rerun = best_of(args.repeats, lambda: ingest_url(source, entry, tmp / "url.flac", tmp / "url.json", cfg))
        httpd.shutdown()

    print(f"ingest benchmark: {args.minutes:g} min stereo 44.1 kHz mp3 (96 kbit/s), best of {args.repeats}")
    rows = [
        ("bare ffmpeg mp3 -> flac", t_bare, None),
        ("ingest_local (probe, flac, checks, sha256, json)", t_local, t_bare),
        ("bare urllib download + ffmpeg", t_bare_url, None),
        ("ingest URL (yt-dlp resolve + download + flac)", t_url, t_bare_url),
        ("re-run from download archive (no network)", t_rerun, t_url),
    ]
    for name, t, base in rows:
        ratio = f"{t / base:5.2f}x of the line above" if base else ""
        print(f"  {name:<50} {t:7.2f} s  {seconds / t:7.0f}x real time  {ratio}")


if __name__ == "__main__":
    main()
