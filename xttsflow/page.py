"""GET / — a page to listen on: choose models and voices, type a text, hear base and fine-tuned side by side.

Plain HTML, CSS and a little JavaScript from xttsflow/web/ (package data): no build step, nothing from a
CDN, so it works offline and behind a firewall. It talks to the server only through the API it serves
(GET /voices, POST /v1/audio/speech), so it needs the same token: with one set, the browser asks for it
(HTTP Basic: any user name, the token as password) and sends it with the page's own requests.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import Response

WEB = Path(__file__).with_name("web")
#: The files the page is made of (name -> media type); a request can only ever select one of these.
FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
         "style.css": "text/css; charset=utf-8"}


def install(app: FastAPI, authorized) -> None:
    def serve(name: str) -> Response:
        # A strict policy: the page runs only its own script and talks only to this server.
        return Response((WEB / name).read_bytes(), media_type=FILES[name], headers={
            "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; connect-src 'self' blob:; "
                                       "img-src 'self' data:; "
                                       "frame-ancestors 'none'"})

    @app.get("/", include_in_schema=False, dependencies=[Depends(authorized)])
    def index() -> Response:
        return serve("index.html")

    @app.get("/app.js", include_in_schema=False, dependencies=[Depends(authorized)])
    def script() -> Response:
        return serve("app.js")

    @app.get("/style.css", include_in_schema=False, dependencies=[Depends(authorized)])
    def style() -> Response:
        return serve("style.css")
