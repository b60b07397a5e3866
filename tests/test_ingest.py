"""Stage 1, ingest: local files and URLs (yt-dlp against a real HTTP server on 127.0.0.1) -> raw/."""

from __future__ import annotations

import http.server
import json
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
import yt_dlp
from conftest import planned_jobs, snakemake, tone, write_config

from xttsflow import download
from xttsflow.audio import probe
from xttsflow.download import FORMATS, DownloadArchive, ingest_url, read_entry, resolve_url
from xttsflow.errors import XttsflowError
from xttsflow.ingest import IngestConfig, ingest_local
from xttsflow.sources import Source, local_source_id, url_source_id

ODD_NAME = "it's a $(touch pwned) ; b&c `x` | {take} é ü 日本.mp3"


# ---------------------------------------------------------------- test media and a real HTTP server

def _ffmpeg(src: Path, dest: Path, *codec: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *codec, str(dest)], check=True)
    return dest


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """A 3 s stereo 44.1 kHz recording in every format users bring, plus the broken inputs."""
    d = tmp_path_factory.mktemp("media")
    left, right = tone(3.0, 44100, 220.0), tone(3.0, 44100, 330.0, dbfs=-18.0)
    wav = d / "tone.wav"
    sf.write(wav, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    files = {"wav": wav}
    for ext, codec in [("mp3", ["-c:a", "libmp3lame", "-b:a", "96k"]), ("ogg", ["-c:a", "libopus", "-b:a", "48k"]),
                       ("m4a", ["-c:a", "aac", "-b:a", "64k"]), ("flac", ["-c:a", "flac"])]:
        files[ext] = _ffmpeg(wav, d / f"tone.{ext}", *codec)
    long_wav = d / "long.wav"
    sf.write(long_wav, tone(40.0, 8000), 8000, subtype="PCM_16")
    files["long_mp3"] = _ffmpeg(long_wav, d / "long.mp3", "-c:a", "libmp3lame", "-b:a", "32k")
    files["zero"] = d / "zero.mp3"
    files["zero"].write_bytes(b"")
    files["text"] = d / "notes.mp3"
    files["text"].write_text("These are my notes for the interview, not a recording.\n" * 20)
    data = files["long_mp3"].read_bytes()  # LAME writes a header with the frame count: truncation shows
    files["truncated"] = d / "truncated.mp3"
    files["truncated"].write_bytes(data[: len(data) // 3])
    return files


class MediaServer:
    """Serves fixed routes on 127.0.0.1 and records every request; a route can fail its first N hits."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, str]] = {}
        self.fail_first: dict[str, int] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                path = self.path.split("#", 1)[0]
                server.requests.append(path)
                status, body, ctype = server.routes.get(path, (404, b"not found", "text/plain"))
                if server.fail_first.get(path, 0) > 0:
                    server.fail_first[path] -= 1
                    status, body, ctype = 503, b"busy", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda request, address: None  # yt-dlp may hang up after the headers
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, path: str, body: bytes, ctype: str = "audio/mpeg", status: int = 200) -> str:
        self.routes[path] = (status, body, ctype)
        return self.base + path

    def hits(self, path: str) -> int:
        return self.requests.count(path)

    def feed(self, path: str, items: list[tuple[str, str, str, str | None]]) -> str:
        """A podcast RSS feed: (guid, title, media path, itunes duration or None) per episode."""
        xml = ['<?xml version="1.0"?><rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
               "<channel><title>Test podcast</title>"]
        for guid, title, media_path, duration in items:
            extra = f"<itunes:duration>{duration}</itunes:duration>" if duration else ""
            xml.append(f"<item><title>{title}</title><guid>{guid}</guid>{extra}"
                       f'<enclosure url="{self.base}{media_path}" type="audio/mpeg" length="1"/></item>')
        xml.append("</channel></rss>")
        return self.add(path, "".join(xml).encode(), "application/rss+xml")


@pytest.fixture
def server():
    srv = MediaServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def refused_url() -> str:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.mp3"


def source(path: str | Path, speaker: str = "ana", language: str = "pt") -> dict:
    return Source(local_source_id(path), "local", str(path), speaker, language).as_dict()


def url_source(url: str, entry: dict) -> dict:
    return Source(entry["id"], "url", url, "ana", "pt").as_dict()


def fast(tmp_path: Path, **kw) -> IngestConfig:
    kw = {"retries": 0, "backoff_s": 0.01, "socket_timeout": 5} | kw
    return IngestConfig(archive=str(tmp_path / "archive.txt"), download_dir=str(tmp_path / "downloads"), **kw)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------- local files

@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg", "m4a", "flac"])
def test_local_file_becomes_flac_and_record(media, tmp_path, fmt):
    src = media[fmt]
    record = ingest_local(source(src), tmp_path / "x.flac", tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text()) == record
    assert record["source"] == local_source_id(src) and record["kind"] == "local" and record["speaker"] == "ana"
    expected_codec = {"wav": "pcm_s16le", "mp3": "mp3", "ogg": "opus", "m4a": "aac", "flac": "flac"}[fmt]
    assert record["probe"]["codec"] == expected_codec and record["probe"]["channels"] == 2
    out = probe(tmp_path / "x.flac")
    assert out["codec"] == "flac" and out["channels"] == 2
    assert out["sample_rate"] == record["probe"]["sample_rate"]  # never resampled at ingest
    assert out["duration"] == pytest.approx(3.0, abs=0.1)
    assert record["ingest"]["method"] == "local-file" and len(record["ingest"]["sha256"]) == 64
    assert leftovers(tmp_path) == ["x.flac", "x.json"]  # no temporary files left


def test_local_ingest_is_lossless_and_deterministic(media, tmp_path):
    ingest_local(source(media["wav"]), tmp_path / "a.flac", tmp_path / "a.json")
    original, rate = sf.read(media["wav"], dtype="int16")
    again, rate2 = sf.read(tmp_path / "a.flac", dtype="int16")
    assert rate == rate2 and np.array_equal(original, again)
    ingest_local(source(media["wav"]), tmp_path / "b.flac", tmp_path / "b.json")
    assert (tmp_path / "a.flac").read_bytes() == (tmp_path / "b.flac").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


@pytest.mark.parametrize("case, expected, advice", [
    ("zero", "empty (0 bytes)", "replace it or remove it from sources"),
    ("text", "is not audio", "replace the file or remove it from sources"),
    ("truncated", "looks truncated or damaged", "download or export it again"),
    ("missing", "does not exist", "fix the path in config `sources` or remove it"),
])
def test_broken_local_input_fails_clearly_and_leaves_nothing(media, tmp_path, case, expected, advice):
    path = tmp_path / "nowhere.mp3" if case == "missing" else media[case]
    out = tmp_path / "raw"
    src = source(path)
    with pytest.raises(XttsflowError) as err:
        ingest_local(src, out / "x.flac", out / "x.json")
    message = str(err.value)
    assert src["id"] in message and path.name in message and expected in message and advice in message
    assert leftovers(out) == []


def test_odd_file_name_is_ingested(media, tmp_path):
    odd = tmp_path / ODD_NAME
    odd.write_bytes(media["mp3"].read_bytes())
    src = source(odd)
    assert src["id"].startswith("it-s-a-touch-pwned")
    ingest_local(src, tmp_path / "raw" / f"{src['id']}.flac", tmp_path / "raw" / f"{src['id']}.json")
    assert probe(tmp_path / "raw" / f"{src['id']}.flac")["duration"] == pytest.approx(3.0, abs=0.1)
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- URLs through yt-dlp

def test_plain_media_url_is_one_entry_and_downloads(media, server, tmp_path):
    url = server.add("/talk.mp3", media["mp3"].read_bytes())
    cfg = fast(tmp_path)
    listing = resolve_url(url, tmp_path / "sources" / "u.json", cfg)
    url_id = url_source_id(url)
    assert listing["id"] == url_id and [e["id"] for e in listing["entries"]] == [f"{url_id}-talk"]
    entry = read_entry(tmp_path / "sources" / "u.json", f"{url_id}-talk")
    assert entry["archive_id"] == "generic talk" and entry["url"] == url
    record = ingest_url(url_source(url, entry), entry, tmp_path / "raw" / "t.flac", tmp_path / "raw" / "t.json", cfg)
    assert record["kind"] == "url" and record["location"] == url and record["probe"]["codec"] == "mp3"
    assert record["ingest"]["method"] == "yt-dlp" and record["ingest"]["downloaded"] is True
    assert probe(tmp_path / "raw" / "t.flac")["duration"] == pytest.approx(3.0, abs=0.1)
    assert (tmp_path / "archive.txt").read_text() == "generic talk\n"
    assert server.hits("/talk.mp3") >= 2  # yt-dlp's look at the URL, then the download


def test_download_archive_prevents_a_second_download(media, server, tmp_path):
    url = server.add("/talk.mp3", media["mp3"].read_bytes())
    cfg = fast(tmp_path)
    entry = resolve_url(url, tmp_path / "u.json", cfg)["entries"][0]
    ingest_url(url_source(url, entry), entry, tmp_path / "a.flac", tmp_path / "a.json", cfg)
    first = list(server.requests)
    (tmp_path / "a.flac").unlink()  # as Snakemake does before it re-runs a job
    record = ingest_url(url_source(url, entry), entry, tmp_path / "a.flac", tmp_path / "a.json", cfg)
    assert server.requests == first  # not one request more
    assert record["ingest"]["downloaded"] is False and record["ingest"]["format_id"] == "mpeg"
    assert (tmp_path / "archive.txt").read_text().splitlines() == ["generic talk"]
    # Listed in the archive but its kept download deleted: refuse to download again, say how to.
    for kept in (tmp_path / "downloads").rglob("media.*"):
        kept.unlink()
    with pytest.raises(XttsflowError, match="delete that line to download it again"):
        ingest_url(url_source(url, entry), entry, tmp_path / "b.flac", tmp_path / "b.json", cfg)
    assert server.requests == first and not (tmp_path / "b.flac").exists()


def test_feed_expands_to_one_entry_per_episode(media, server, tmp_path):
    server.add("/ep1.mp3", media["mp3"].read_bytes())
    server.add("/ep2.mp3", media["mp3"].read_bytes())
    url = server.feed("/feed.xml", [("Ep-One", "First episode", "/ep1.mp3", None),
                                    ("ep-two", "Second episode", "/ep2.mp3", None),
                                    ("ep-two", "Listed twice", "/ep2.mp3", None)])
    listing = resolve_url(url, tmp_path / "feed.json", fast(tmp_path))
    url_id = url_source_id(url)
    ids = [e["id"] for e in listing["entries"]]
    assert ids[1] == f"{url_id}-ep-two" and len(ids) == 2  # the duplicate is listed once
    assert ids[0].startswith(f"{url_id}-ep-one-")  # case-folded id: a hash keeps it unique
    assert [e["title"] for e in listing["entries"]] == ["First episode", "Second episode"]
    assert server.hits("/ep1.mp3") == 0  # flat listing: no media fetched yet
    entry = listing["entries"][0]
    record = ingest_url(url_source(url, entry), entry, tmp_path / "e.flac", tmp_path / "e.json", fast(tmp_path))
    assert record["ingest"]["title"] == "First episode" and record["ingest"]["entry_id"] == "Ep-One"


def test_nested_playlists_are_expanded(media, server, tmp_path):
    """A channel lists its tabs as references to other playlists: those are listed in turn."""
    tab = server.feed("/tab.xml", [("ep-1", "One", "/ep1.mp3", None), ("ep-2", "Two", "/ep2.mp3", None)])
    channel = {"_type": "playlist", "id": "chan", "extractor_key": "YoutubeTab", "entries": [
        {"_type": "url", "ie_key": "YoutubeTab", "url": tab, "title": "Videos"},
        {"_type": "url", "ie_key": "Youtube", "id": "dQw4w9WgXcQ", "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
         "title": "A video", "duration": 212},
    ]}
    entries = download._entries(channel, "https://www.youtube.com/@chan", fast(tmp_path), 0, "test")
    assert [(e["entry_id"], e["archive_id"]) for e in entries] == [
        ("ep-1", "generic ep-1"), ("ep-2", "generic ep-2"), ("dQw4w9WgXcQ", "youtube dQw4w9WgXcQ")]
    assert entries[2]["duration"] == 212 and server.hits("/tab.xml") == 1


def test_page_with_several_media_expands_and_fetches_each(media, server, tmp_path):
    server.add("/one.mp3", media["mp3"].read_bytes())
    server.add("/two.ogg", media["ogg"].read_bytes(), "audio/ogg")
    page = (f'<html><head><title>Talks</title></head><body><audio src="{server.base}/one.mp3"></audio>'
            f'<audio src="{server.base}/two.ogg"></audio></body></html>')
    url = server.add("/talks.html", page.encode(), "text/html")
    cfg = fast(tmp_path)
    entries = resolve_url(url, tmp_path / "p.json", cfg)["entries"]
    assert [e["playlist_index"] for e in entries] == [1, 2] and len({e["id"] for e in entries}) == 2
    codecs = [ingest_url(url_source(url, e), e, tmp_path / f"{n}.flac", tmp_path / f"{n}.json", cfg)["probe"]["codec"]
              for n, e in enumerate(entries)]
    assert codecs == ["mp3", "opus"]  # each entry fetched its own item of the page


@pytest.mark.parametrize("kind", ["404", "refused"])
def test_unreachable_url_fails_with_a_clear_message(server, tmp_path, kind):
    url = server.base + "/missing.mp3" if kind == "404" else refused_url()
    cfg = fast(tmp_path, retries=2, backoff_s=0.05)
    start = time.monotonic()
    with pytest.raises(XttsflowError) as err:
        resolve_url(url, tmp_path / "u.json", cfg)
    elapsed, message = time.monotonic() - start, str(err.value)
    assert url_source_id(url) in message and url in message
    if kind == "404":
        assert "HTTP 404" in message and "after 1 attempt(s)" in message  # permanent: no retry
    else:
        assert "connection was refused" in message and "after 3 attempt(s)" in message
        assert elapsed >= 0.05 + 0.1  # exponential backoff between the attempts
    assert not (tmp_path / "u.json").exists()


def test_transient_errors_are_retried_with_backoff(media, server, tmp_path):
    url = server.add("/busy.mp3", media["mp3"].read_bytes())
    server.fail_first["/busy.mp3"] = 2
    start = time.monotonic()
    listing = resolve_url(url, tmp_path / "u.json", fast(tmp_path, retries=3, backoff_s=0.1))
    assert len(listing["entries"]) == 1 and server.hits("/busy.mp3") == 3
    assert time.monotonic() - start >= 0.1 + 0.2
    server.fail_first["/busy.mp3"] = 5
    with pytest.raises(XttsflowError, match=r"HTTP 503 .* \(after 2 attempt\(s\)\)"):
        resolve_url(url, tmp_path / "v.json", fast(tmp_path, retries=1))


def test_max_duration_refuses_long_media(media, server, tmp_path):
    url = server.add("/long.mp3", media["long_mp3"].read_bytes())
    cfg = fast(tmp_path, max_duration=30)
    entry = resolve_url(url, tmp_path / "u.json", cfg)["entries"][0]
    assert entry["duration"] is None  # a bare file: its length shows only once it is here
    with pytest.raises(XttsflowError, match=r"lasts 40 s, longer than ingest.max_duration \(30 s\)"):
        ingest_url(url_source(url, entry), entry, tmp_path / "l.flac", tmp_path / "l.json", cfg)
    assert not (tmp_path / "l.flac").exists() and not list((tmp_path / "downloads").rglob("media.*"))
    assert not (tmp_path / "archive.txt").exists()
    # A feed that declares the length: refused before a single byte of media is fetched.
    feed = server.feed("/feed.xml", [("ep-1", "Three hours", "/long.mp3", "03:00:00")])
    entry = resolve_url(feed, tmp_path / "f.json", cfg)["entries"][0]
    assert entry["duration"] == 3 * 3600
    before = server.hits("/long.mp3")
    with pytest.raises(XttsflowError, match="never cut silently"):
        ingest_url(url_source(feed, entry), entry, tmp_path / "f.flac", tmp_path / "f.json", cfg)
    assert server.hits("/long.mp3") == before


@pytest.mark.parametrize("quality, chosen", [("best", "a256"), ("128k", "a128"), ("64k", "a48")])
def test_audio_quality_selects_the_format(quality, chosen):
    formats = [{"format_id": f"a{b}", "url": f"http://x/{b}", "ext": "m4a", "vcodec": "none", "acodec": "mp4a",
                "abr": b} for b in (48, 70, 128, 160, 256)]
    formats.append({"format_id": "v", "url": "http://x/v", "ext": "mp4", "vcodec": "avc1", "acodec": "mp4a",
                    "tbr": 2000, "height": 720})
    info = {"id": "x", "title": "x", "formats": formats, "extractor": "t", "extractor_key": "T",
            "webpage_url": "http://x"}
    with yt_dlp.YoutubeDL({"quiet": True, "format": FORMATS[quality]}) as ydl:
        assert ydl.process_ie_result(info, download=False)["format_id"] == chosen
    # Nothing at or under the cap: the leanest audio rather than failing.
    info["formats"] = [f for f in formats if f["format_id"] in ("a160", "a256")]
    with yt_dlp.YoutubeDL({"quiet": True, "format": FORMATS["64k"]}) as ydl:
        assert ydl.process_ie_result(info, download=False)["format_id"] == "a160"


def _append_keys(path: str, worker: int) -> None:
    archive = DownloadArchive(path)
    for n in range(40):
        archive.add(f"generic w{worker}-{n}")
        archive.add("generic shared")  # every worker races to add this one


def test_download_archive_is_safe_under_concurrent_jobs(tmp_path):
    path = str(tmp_path / "archive.txt")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_keys, args=(path, w)) for w in range(6)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(30)
    lines = Path(path).read_text().splitlines()
    assert sorted(lines) == sorted({f"generic w{w}-{n}" for w in range(6) for n in range(40)} | {"generic shared"})
    assert "generic w3-7" in DownloadArchive(path) and "generic w9-0" not in DownloadArchive(path)


# ---------------------------------------------------------------- the stage's CLI

def test_cli_ingests_files_and_urls_and_reports_failures(media, server, tmp_path):
    url = server.add("/talk.mp3", media["mp3"].read_bytes())
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "xttsflow.ingest", str(media["ogg"]), url, str(media["zero"]),
           "--out", str(out), "--speaker", "ana", "--language", "en", "--retries", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "1 source(s) failed (errors above); 2 ingested" in proc.stderr and "empty (0 bytes)" in proc.stderr
    assert len(proc.stdout.splitlines()) == 2  # one line per ingested source
    ids = {local_source_id(media["ogg"]), f"{url_source_id(url)}-talk"}
    assert {p.stem for p in out.glob("*.flac")} == ids
    assert all(json.loads((out / f"{i}.json").read_text())["language"] == "en" for i in ids)
    assert (out / "download-archive.txt").read_text() == "generic talk\n"


# ---------------------------------------------------------------- the real workflow

def _workflow(tmp_path: Path, media: dict, server: MediaServer) -> tuple[Path, dict]:
    work = tmp_path / "work"
    rec = work / "recordings"
    rec.mkdir(parents=True)
    for name, key in [("good.mp3", "mp3"), (ODD_NAME, "ogg"), ("zero.mp3", "zero")]:
        (rec / name).write_bytes(media[key].read_bytes())
    server.add("/talk.mp3", media["mp3"].read_bytes())
    server.add("/ep1.mp3", media["ogg"].read_bytes(), "audio/ogg")
    server.add("/ep2.mp3", media["mp3"].read_bytes())
    urls = {
        "single": server.base + "/talk.mp3",
        "feed": server.feed("/feed.xml", [("ep-1", "One", "/ep1.mp3", None), ("ep-2", "Two", "/ep2.mp3", None)]),
        "404": server.base + "/deleted.mp3",
        "refused": refused_url(),
    }
    config = {
        "sources": [{"path": "recordings", "speaker": "ana", "language": "en"},
                    {"path": "recordings/not-there.mp3", "speaker": "ana", "language": "en"}]
        + [{"url": u, "speaker": "ana", "language": "en"} for u in urls.values()],
        "until": "ingest",
        "on_source_error": "stop",  # today's behaviour: a broken source fails its job (and the run)
        "ingest": {"retries": 1, "backoff_s": 0.05, "socket_timeout": 5},
    }
    write_config(work, config)
    return work, urls


@pytest.mark.slow
def test_workflow_ingests_every_good_source_and_fails_only_the_broken_ones(media, server, tmp_path):
    work, urls = _workflow(tmp_path, media, server)
    proc = snakemake(work, "--cores", "2", "--keep-going", check=False)
    assert proc.returncode != 0  # some sources are broken on purpose
    feed_id, single_id = url_source_id(urls["feed"]), url_source_id(urls["single"])
    good = [local_source_id("recordings/good.mp3"), local_source_id(f"recordings/{ODD_NAME}"),
            f"{single_id}-talk", f"{feed_id}-ep-1", f"{feed_id}-ep-2"]
    raw = work / "raw"
    assert sorted(p.stem for p in raw.glob("*.flac")) == sorted(good)
    assert sorted(p.stem for p in raw.glob("*.json")) == sorted(good)
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]  # no temporary files
    for sid in good:
        record = json.loads((raw / f"{sid}.json").read_text())
        assert record["source"] == sid and record["speaker"] == "ana" and record["language"] == "en"
        assert probe(raw / f"{sid}.flac")["duration"] == pytest.approx(3.0, abs=0.1)
    assert json.loads((work / "sources" / f"{feed_id}.json").read_text())["entries"][1]["title"] == "Two"
    assert not (work / "pwned").exists()
    expected = {
        f"ingest/{local_source_id('recordings/zero.mp3')}.log": "empty (0 bytes)",
        f"ingest/{local_source_id('recordings/not-there.mp3')}.log": "does not exist",
        f"resolve_url/{url_source_id(urls['404'])}.log": "HTTP 404",
        f"resolve_url/{url_source_id(urls['refused'])}.log": "connection was refused",
    }
    for log, phrase in expected.items():
        text = (work / "logs" / log).read_text()
        assert phrase in text and "XttsflowError" in text, log
    assert "connection was refused" in proc.stderr and "HTTP 404" in proc.stderr

    # Reordering the config's sources renames nothing; a changed recording re-runs its own job only
    # (Snakemake 9 compares checksums of small files, so the content must change, not just the mtime).
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config["sources"].reverse()
    write_config(work, config)
    (work / "recordings" / "good.mp3").write_bytes(media["m4a"].read_bytes())
    assert planned_jobs(work) == {"ingest_local": 3, "resolve_url": 2, "all": 1}  # 2 broken + the changed one

    # Forcing the downloads again converts the archived copies: not one more request for media.
    media_paths = ("/talk.mp3", "/ep1.mp3", "/ep2.mp3")
    before = [r for r in server.requests if r in media_paths]
    old = (raw / f"{single_id}-talk.flac").stat().st_mtime_ns
    targets = [f"raw/{single_id}-talk.flac", f"raw/{feed_id}-ep-1.flac", f"raw/{feed_id}-ep-2.flac"]
    snakemake(work, "--cores", "2", *targets, "--forcerun", "ingest_url")
    assert [r for r in server.requests if r in media_paths] == before
    assert (raw / f"{single_id}-talk.flac").stat().st_mtime_ns > old
    assert len((raw / "download-archive.txt").read_text().splitlines()) == 3
