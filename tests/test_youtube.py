"""YouTube as yt-dlp needs it today: a JavaScript runtime and the EJS challenge-solver scripts, handed to
yt-dlp by path; a clear refusal when they are missing; cookies for sign-in-gated media."""

from __future__ import annotations

import http.server
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yt_dlp
from conftest import snakemake, write_config

from xttsflow import jsruntime
from xttsflow.download import _options, ingest_url, resolve_url
from xttsflow.errors import XttsflowError
from xttsflow.ingest import IngestConfig
from xttsflow.sources import Source, url_source_id

YOUTUBE = "https://www.youtube.com/watch?v=jNQXAC9IVRw"


def cfg(tmp_path: Path, **kw) -> IngestConfig:
    kw = {"retries": 0, "backoff_s": 0.01, "socket_timeout": 5} | kw
    return IngestConfig(archive=str(tmp_path / "archive.txt"), download_dir=str(tmp_path / "downloads"), **kw)


def test_environment_has_runtime_and_scripts(tmp_path, caplog):
    """yt-dlp's own verbose header, as it prints it before an extraction, names Deno and yt_dlp_ejs."""
    caplog.set_level(logging.DEBUG, logger="xttsflow.download")
    with yt_dlp.YoutubeDL(_options(cfg(tmp_path), verbose=True)) as ydl:
        ydl.print_debug_header()
        assert jsruntime.youtube_problem(ydl) is None
    header = caplog.text
    assert "JS runtimes: deno-" in header, header
    assert "yt_dlp_ejs-" in header, header


def test_runtime_found_without_the_venv_on_path(tmp_path):
    """A Snakemake/SLURM job's PATH need not include the venv: the runtime is passed to yt-dlp by path."""
    code = ("import yt_dlp; from xttsflow.download import _options; from xttsflow.ingest import IngestConfig; "
            "from xttsflow.jsruntime import youtube_problem; o = _options(IngestConfig()); "
            "print(o['js_runtimes']['deno']['path']); "
            "print(youtube_problem(yt_dlp.YoutubeDL(o | {'quiet': True})))")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split("\n")
    deno = Path(out[0])
    assert deno.is_file() and deno.parent == Path(sys.executable).parent, out
    assert out[1] == "None", out


@pytest.mark.parametrize("spec", ["none", "deno:/nonexistent/deno"])
def test_youtube_refused_without_runtime(tmp_path, spec):
    """No runtime: a one-line reason before any request, never a storyboard download."""
    with pytest.raises(XttsflowError) as err:
        resolve_url(YOUTUBE, tmp_path / "entries.json", cfg(tmp_path, js_runtime=spec))
    message = str(err.value)
    assert "\n" not in message
    assert "JavaScript runtime" in message and url_source_id(YOUTUBE) in message
    assert not (tmp_path / "entries.json").exists()
    entry = {"id": url_source_id(YOUTUBE) + "-jnqxac9ivrw", "entry_id": "jNQXAC9IVRw", "url": YOUTUBE,
             "archive_id": "youtube jNQXAC9IVRw", "playlist_index": None}
    source = Source(entry["id"], "url", YOUTUBE, "ana", "en").as_dict()
    with pytest.raises(XttsflowError, match="JavaScript runtime"):
        ingest_url(source, entry, tmp_path / "a.flac", tmp_path / "a.json", cfg(tmp_path, js_runtime=spec))
    assert not list(tmp_path.glob("a.*")) and not (tmp_path / "downloads").exists()


def test_youtube_refused_in_workflow(tmp_path):
    """The same refusal through the real workflow: the job's log says why in one line."""
    write_config(tmp_path, {"sources": [{"url": YOUTUBE, "speaker": "ana", "language": "en"}],
                            "ingest": {"js_runtime": "none"}, "until": "ingest", "on_source_error": "stop"})
    proc = snakemake(tmp_path, "--cores", "1", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "resolve_url" / f"{url_source_id(YOUTUBE)}.log").read_text()
    assert "yt-dlp finds no JavaScript runtime" in log


def test_non_youtube_unaffected_and_bad_runtime_name(tmp_path):
    assert not jsruntime.is_youtube("http://127.0.0.1:9/a.mp3")
    assert jsruntime.is_youtube("https://youtu.be/jNQXAC9IVRw")
    assert jsruntime.is_youtube("https://www.youtube.com/@SomeChannel")
    with pytest.raises(XttsflowError, match="unknown runtime 'rhino'"):
        jsruntime.runtime_option("rhino:/usr/bin/rhino")


class CookieServer:
    """Serves one WAV on 127.0.0.1 and records the Cookie header of every request."""

    def __init__(self, body: bytes):
        self.cookies: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.cookies.append(self.headers.get("Cookie"))
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/member-only.wav"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_cookies_file_sent_never_logged_never_modified(tmp_path, caplog):
    wav = tmp_path / "tone.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(22050) / 10)).astype(np.float32), 22050, subtype="PCM_16")
    srv = CookieServer(wav.read_bytes())
    try:
        secret = "s3cr3t-session-value"
        jar = tmp_path / "cookies.txt"
        jar.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t" + secret + "\n")
        before = jar.read_bytes()
        caplog.set_level(logging.DEBUG)
        c = cfg(tmp_path, cookies_file=str(jar))
        entries = resolve_url(srv.url, tmp_path / "entries.json", c)
        entry = entries["entries"][0]
        source = Source(entry["id"], "url", srv.url, "ana", "en").as_dict()
        ingest_url(source, entry, tmp_path / "a.flac", tmp_path / "a.json", c)
        assert srv.cookies and all(cookie == f"session={secret}" for cookie in srv.cookies), srv.cookies
        assert secret not in caplog.text and str(jar) not in caplog.text
        assert secret not in (tmp_path / "a.json").read_text()
        assert jar.read_bytes() == before
        with pytest.raises(XttsflowError, match="cookies_file: .* is not a file"):
            resolve_url(srv.url, tmp_path / "e2.json", cfg(tmp_path, cookies_file=str(tmp_path / "nope.txt")))
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
