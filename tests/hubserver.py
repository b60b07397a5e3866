"""A stand-in Hugging Face hub on 127.0.0.1 (HF_ENDPOINT=server.url), plus a plain file server.

It answers the routes huggingface_hub uses: revision info (`/api/models/<repo>/revision/<rev>`), the
file tree (`/api/models/<repo>/tree/<rev>`) and HEAD/GET of `/<repo>/resolve/<rev>/<file>` with ETag
(sha256 for large files as the hub's LFS files have, git's blob sha1 for small ones), X-Repo-Commit,
Content-Length and HTTP Range. Faults are injected per file: a 404, or a connection dropped after N bytes.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

LFS_MIN_BYTES = 10_000


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class FileStore:
    """A file's bytes read lazily from disk (models are hundreds of MB)."""

    def __init__(self, path: Path):
        self.path, self.size = path, path.stat().st_size
        data = path.read_bytes()
        self.etag = hashlib.sha256(data).hexdigest() if self.size >= LFS_MIN_BYTES else git_blob_sha1(data)

    def read(self, start: int, end: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(end - start)


class StandInServer:
    """Serves repositories (`add_repo`) and plain URLs (`add_file`); records (method, path, Range) per request."""

    def __init__(self):
        self.repos: dict[str, dict[str, FileStore]] = {}
        self.files: dict[str, FileStore] = {}
        self.missing: set[str] = set()  # "<repo>/<file>" answered 404 although listed
        self.drop_after: dict[str, list[int]] = {}  # file name -> [bytes to send, times left]
        self.requests: list[tuple[str, str, str | None]] = []
        self.sent: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                server._handle(self, body=False)

            def do_GET(self):  # noqa: N802
                server._handle(self, body=True)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # clients hang up mid-body on purpose
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------ content
    def add_repo(self, repo_id: str, folder: Path, names: list[str] | None = None) -> None:
        names = names or sorted(p.name for p in folder.iterdir() if p.is_file())
        self.repos[repo_id] = {name: FileStore(folder / name) for name in names}

    def commit(self, repo_id: str) -> str:
        listing = ",".join(f"{n}:{f.etag}" for n, f in sorted(self.repos[repo_id].items()))
        return hashlib.sha1(listing.encode()).hexdigest()

    def add_file(self, path: str, file: Path) -> str:
        self.files[path] = FileStore(file)
        return self.url + path

    def gets(self, name: str) -> list[str | None]:
        """The Range header of every GET of a file whose path ends with `name`."""
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith("/" + name)]

    # ------------------------------------------------------------ routes
    def _handle(self, h, body: bool) -> None:
        path = h.path.split("?", 1)[0]
        self.requests.append((h.command, path, h.headers.get("Range")))
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m and m[1] in self.repos:
            repo = m[1]
            return self._json(h, {"id": repo, "modelId": repo, "sha": self.commit(repo), "private": False,
                                  "siblings": [{"rfilename": n} for n in sorted(self.repos[repo])]}, body)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        if m and m[1] in self.repos:
            entries = [{"type": "file", "path": n, "size": f.size, "oid": f.etag}
                       | ({"lfs": {"oid": f.etag, "size": f.size}} if len(f.etag) == 64 else {})
                       for n, f in sorted(self.repos[m[1]].items())]
            return self._json(h, entries, body)
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and m[1] in self.repos and m[3] in self.repos[m[1]] and f"{m[1]}/{m[3]}" not in self.missing:
            extra = {"X-Repo-Commit": self.commit(m[1])}
            return self._file(h, self.repos[m[1]][m[3]], m[3], body, extra)
        if path in self.files:
            return self._file(h, self.files[path], path.rsplit("/", 1)[-1], body, {})
        error = {"X-Error-Code": "EntryNotFound"} if m and m[1] in self.repos else {"X-Error-Code": "RepoNotFound"}
        self._send(h, 404, b'{"error": "not found"}', "application/json", error, body)

    def _json(self, h, data, body: bool) -> None:
        self._send(h, 200, json.dumps(data).encode(), "application/json", {}, body)

    def _file(self, h, f: FileStore, name: str, body: bool, extra: dict) -> None:
        start, status = 0, 200
        rng = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        if rng:
            start, status = int(rng[1]), 206
            if start >= f.size:
                return self._send(h, 416, b"", "text/plain", {"Content-Range": f"bytes */{f.size}"}, body)
        headers = {"ETag": f'"{f.etag}"', "Accept-Ranges": "bytes", **extra}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{f.size - 1}/{f.size}"
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(f.size - start))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        if not body:
            return
        drop = self.drop_after.get(name)
        end = f.size
        if drop and drop[1] > 0:
            drop[1] -= 1
            end = max(start, min(f.size, drop[0]))
        for pos in range(start, end, 1 << 20):
            chunk = f.read(pos, min(end, pos + (1 << 20)))
            h.wfile.write(chunk)
            self.sent[name] = self.sent.get(name, 0) + len(chunk)
        if end < f.size:  # hang up mid-body, as a dropped connection does
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)

    def _send(self, h, status: int, data: bytes, ctype: str, headers: dict, body: bool) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        if body:
            h.wfile.write(data)
