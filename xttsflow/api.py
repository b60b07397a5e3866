"""The inference REST API: POST /synthesize, GET /models, GET /references, GET /health (+ /openapi.json).

Safe by default: it binds 127.0.0.1, and refuses any other address unless a bearer token is set
(XTTSFLOW_API_TOKEN); text length, upload size and upload type are limited; request values only ever
select from models and clips the server listed itself, never name a path. Each model loads once per
process; a queue in front of the one generation slot keeps concurrent requests from exhausting GPU memory.

Run: `python -m xttsflow.api --workdir <workflow folder> [--host 127.0.0.1] [--port 8000]`.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time, and they
# use values local to create_app (the configured limits).
import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from . import __version__, cli, paths
from .atomic import read_json
from .audio import AUDIO_EXTENSIONS, probe
from .devices import resolve_device
from .errors import XttsflowError
from .inference import LOADS, Settings, get_synthesizer, loaded_models, wav_bytes

log = logging.getLogger(__name__)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[a-z]{2,4})?$"
_ID = re.compile(ID_PATTERN)
UPLOAD_TYPES = ("audio/", "application/octet-stream")
TOKEN_ENV = "XTTSFLOW_API_TOKEN"


class ApiConfig(BaseModel):
    """Server options (the command line sets them; see `python -m xttsflow.api --help`)."""

    workdir: Path = Path(".")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: str | None = Field(None, min_length=16)
    device: str = "auto"
    max_text_chars: int = Field(1000, ge=1)
    max_upload_bytes: int = Field(10 * 2**20, ge=1024)
    max_reference_seconds: float = Field(60.0, gt=0)
    slots: int = Field(1, ge=1, description="requests generating at once")
    max_queue: int = Field(8, ge=0, description="requests waiting for a slot before 429")
    max_loaded_models: int = Field(2, ge=1)
    max_new_tokens: int | None = Field(None, ge=2, description="server cap on audio codes per sentence")
    extra_models: dict[str, Path] = {}
    preload: list[str] = []


class ModelInfo(BaseModel):
    id: str
    kind: str = Field(description="base, finetuned (a workflow run's export) or extra (named on the command line)")
    run: str | None
    path: str
    loaded: bool
    default_references: list[str]


class Health(BaseModel):
    status: str
    version: str
    device: str
    loaded_models: list[str]
    loads: dict[str, int]
    queue: dict[str, int]


class References(BaseModel):
    clips: list[str] = Field(description="reference clip ids (the dataset's clips)")
    defaults: dict[str, list[str]] = Field(description="per run: the clips its evaluation conditioned on")


class Problem(BaseModel):
    detail: str


class NotFound(XttsflowError):
    """A model or clip id the server does not have (answered 404)."""


# ---------- what the server can serve: found under the workdir, looked up by id only ----------


class Catalog:
    """Models and reference clips of a workflow folder; re-read on each request so new runs appear."""

    def __init__(self, workdir: Path, extra_models: dict[str, Path]):
        self.workdir = workdir.resolve()
        self.extra = {k: Path(v).resolve() for k, v in extra_models.items()}
        self.wavs = paths.dataset_wavs(self.workdir)

    def models(self) -> dict[str, dict]:
        found = {}
        base = paths.base_model(self.workdir)
        if (base / paths.MODEL_WEIGHTS).is_file():
            found["base"] = {"kind": "base", "run": None, "path": base}
        runs = self.workdir / paths.CHECKPOINTS
        for folder in sorted(runs.iterdir()) if runs.is_dir() else []:
            run = folder.name
            if _ID.match(run) and run != "base" and paths.export_model(run, self.workdir).is_file():
                found[run] = {"kind": "finetuned", "run": run, "path": paths.export_dir(run, self.workdir)}
        for name, path in self.extra.items():
            found[name] = {"kind": "extra", "run": None, "path": path}
        return found

    def model(self, model_id: str) -> dict:
        models = self.models()
        if model_id not in models:
            raise NotFound(f"unknown model {model_id!r} — GET /models lists them: {', '.join(models) or 'none'}")
        return models[model_id]

    def default_references(self) -> dict[str, list[str]]:
        """Per run, the reference clips its evaluation chose (samples/{run}/references.json)."""
        out = {}
        for run, path in paths.references_by_run(self.workdir).items():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                out[run] = [Path(r["file"]).stem for r in read_json(path)["references"]]
        return out

    def references_for(self, model: dict) -> list[Path]:
        defaults = self.default_references()
        ids = defaults.get(model["run"]) or next(iter(defaults.values()), [])
        return [self.clip(i) for i in ids]

    def clips(self) -> list[str]:
        return sorted(p.stem for p in self.wavs.glob("*.wav")) if self.wavs.is_dir() else []

    def clip(self, clip_id: str) -> Path:
        # The id is matched against a strict pattern first, so the joined path cannot leave dataset/wavs.
        path = self.wavs / f"{clip_id}.wav"
        if not _ID.match(clip_id) or os.path.dirname(os.path.normpath(path)) != str(self.wavs) or not path.is_file():
            raise NotFound(f"unknown reference clip {clip_id!r} — GET /references lists the clip ids")
        return path


class Gate:
    """A bounded queue in front of the generation slots: beyond max_queue waiting requests, answer 429."""

    def __init__(self, slots: int, max_queue: int):
        self.slots, self.max_queue = slots, max_queue
        self.waiting = self.active = 0
        self._sem = asyncio.Semaphore(slots)

    @contextlib.asynccontextmanager
    async def __call__(self):
        if self.waiting >= self.max_queue and self._sem.locked():
            raise HTTPException(429, f"server busy: {self.waiting} requests queued — retry later",
                                headers={"Retry-After": "2"})
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._sem.release()


def create_app(config: ApiConfig):
    """The FastAPI application for one server process."""
    catalog = Catalog(config.workdir, config.extra_models)
    gate = Gate(config.slots, config.max_queue)
    uploads = Path(tempfile.mkdtemp(prefix="xttsflow-api-"))
    bearer = HTTPBearer(auto_error=False, description=f"required when the server has a token ({TOKEN_ENV})")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for model_id in config.preload:
            await run_in_threadpool(_load, model_id)
        yield
        shutil.rmtree(uploads, ignore_errors=True)

    app = FastAPI(title="xttsflow inference API", version=__version__, lifespan=lifespan,
                  description=__doc__.split("\n\n")[1].replace("\n", " "))
    errors = {code: {"model": Problem} for code in (400, 401, 404, 411, 413, 415, 429)}

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if config.token is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token — send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    def _load(model_id: str):
        model = catalog.model(model_id)
        return get_synthesizer(model["path"], device=config.device, max_loaded=config.max_loaded_models)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        # Refuse oversized or unsized uploads before reading a byte of them.
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return JSONResponse({"detail": "send a Content-Length header (chunked uploads are refused)"}, 411)
            if int(length) > config.max_upload_bytes + 64 * 1024:
                return JSONResponse({"detail": f"request body of {int(length)} bytes is over the limit of "
                                     f"{config.max_upload_bytes} bytes for the reference upload"}, 413)
        return await call_next(request)

    @app.exception_handler(XttsflowError)
    async def bad_input(request: Request, err: XttsflowError):
        return JSONResponse({"detail": str(err)}, 400)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, err: NotFound):
        return JSONResponse({"detail": str(err)}, 404)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        ids = {str(Path(m["path"]).resolve()): i for i, m in catalog.models().items()}
        return Health(status="ok", version=__version__, device=resolve_device(config.device),
                      loaded_models=[ids.get(p, p) for p in loaded_models()],
                      loads={ids.get(p, p): n for p, n in LOADS.items()},
                      queue={"active": gate.active, "waiting": gate.waiting, "slots": gate.slots,
                             "max_queue": gate.max_queue})

    @app.get("/models", response_model=list[ModelInfo], responses=errors, dependencies=[Depends(authorized)])
    def models() -> list[ModelInfo]:
        loaded = set(loaded_models())
        defaults = catalog.default_references()
        return [ModelInfo(id=i, kind=m["kind"], run=m["run"], path=_shown(m["path"], catalog.workdir),
                          loaded=str(Path(m["path"]).resolve()) in loaded,
                          default_references=defaults.get(m["run"]) or next(iter(defaults.values()), []))
                for i, m in catalog.models().items()]

    @app.get("/references", response_model=References, responses=errors, dependencies=[Depends(authorized)])
    def references() -> References:
        return References(clips=catalog.clips(), defaults=catalog.default_references())

    @app.post(
        "/synthesize",
        responses={200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
                         "description": "16-bit mono WAV at the model's rate (24 kHz)"}, **errors},
        response_class=Response,
        dependencies=[Depends(authorized)],
    )
    async def synthesize(
        text: Annotated[str, Form(min_length=1, max_length=config.max_text_chars, description="what to say")],
        language: Annotated[str, Form(pattern=LANGUAGE_PATTERN, description="XTTS language code")] = "en",
        model: Annotated[str, Form(pattern=ID_PATTERN, description="a model id from GET /models")] = "base",
        reference_id: Annotated[list[str] | None, Form(description="reference clip id(s) from GET /references; "
                                                       "default: the model's evaluation references")] = None,
        reference: Annotated[UploadFile | None, File(description="or: a reference clip of the voice "
                                                     f"({', '.join(AUDIO_EXTENSIONS)})")] = None,
        seed: Annotated[int, Form(ge=0, lt=2**32)] = 1234,
        temperature: Annotated[float | None, Form(ge=0.01, le=5, allow_inf_nan=False)] = None,
        top_k: Annotated[int | None, Form(ge=1, le=1000)] = None,
        top_p: Annotated[float | None, Form(gt=0, le=1, allow_inf_nan=False)] = None,
        speed: Annotated[float, Form(ge=0.25, le=4, allow_inf_nan=False)] = 1.0,
    ) -> Response:
        for clip_id in reference_id or []:
            if not _ID.match(clip_id):
                raise HTTPException(400, f"reference_id {clip_id[:80]!r} is not a clip id (letters, digits, '_', "
                                         "'.', '-'; no paths) — GET /references lists them")
        chosen = catalog.model(model)  # 404 before any work
        settings = Settings(seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, speed=speed,
                            max_new_tokens=config.max_new_tokens)
        upload = await _save_upload(reference) if reference is not None and reference.filename else None
        try:
            paths = [catalog.clip(i) for i in reference_id or []] + ([upload] if upload else [])
            paths = paths or catalog.references_for(chosen)
            if not paths:
                raise XttsflowError("no reference clip: send reference_id (GET /references) or upload a clip")
            async with gate():
                began = time.perf_counter()
                samples, rate = await run_in_threadpool(_speak, model, paths, text, language, settings)
                took = time.perf_counter() - began
        finally:
            if upload:
                upload.unlink(missing_ok=True)
        seconds = len(samples) / rate
        log.info("synthesize %s/%s: %d chars -> %.2f s in %.2f s", model, language, len(text), seconds, took)
        return Response(wav_bytes(samples, rate), media_type="audio/wav", headers={
            "X-Audio-Seconds": f"{seconds:.3f}", "X-Synthesis-Seconds": f"{took:.3f}", "X-Seed": str(seed)})

    def _speak(model_id: str, paths: list[Path], text: str, language: str, settings: Settings):
        synthesizer = _load(model_id)
        synthesizer.check_language(language)
        voice = synthesizer.voice(paths)
        return synthesizer.synthesize(text, language, voice, settings), synthesizer.sample_rate

    async def _save_upload(upload: UploadFile) -> Path:
        suffix = Path(upload.filename or "").suffix.lower()
        kind = (upload.content_type or "application/octet-stream").lower()
        if suffix not in AUDIO_EXTENSIONS or not kind.startswith(UPLOAD_TYPES):
            raise HTTPException(415, f"reference upload {upload.filename[:80]!r} ({kind}) is not an accepted audio "
                                     f"file — send one of {', '.join(AUDIO_EXTENSIONS)}")
        path = uploads / f"{uuid.uuid4().hex}{suffix}"  # our own name: the client's file name is never used
        size = 0
        with open(path, "wb") as f:
            while chunk := await upload.read(1 << 16):
                size += len(chunk)
                if size > config.max_upload_bytes:
                    f.close()
                    path.unlink(missing_ok=True)
                    raise HTTPException(413, f"reference upload is over the limit of {config.max_upload_bytes} bytes")
                f.write(chunk)
        try:
            info = await run_in_threadpool(probe, path)
        except XttsflowError:
            path.unlink(missing_ok=True)
            raise HTTPException(415, f"reference upload {upload.filename[:80]!r} is not audio FFmpeg can read "
                                     f"— send a recording ({', '.join(AUDIO_EXTENSIONS)})") from None
        if (info["duration"] or 0) > config.max_reference_seconds:
            path.unlink(missing_ok=True)
            raise HTTPException(413, f"reference upload is {info['duration']:.0f} s long — send at most "
                                     f"{config.max_reference_seconds:.0f} s (6-10 s of clean speech is best)")
        return path

    return app


def _shown(path: Path, root: Path) -> str:
    """A model's folder relative to the workdir where it lies inside it (absolute paths are not shown)."""
    path = Path(path).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name


def check_binding(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a bearer token."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not token:
        raise XttsflowError(f"refusing to listen on {host} without a bearer token — set {TOKEN_ENV} (16+ characters) "
                            "or bind 127.0.0.1")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from .logs import setup_console

    parser = cli.parser("api", __doc__.splitlines()[0])
    parser.add_argument("--workdir", default=".", help="the workflow folder (models/, checkpoints/, dataset/)")
    parser.add_argument("--host", default="127.0.0.1", help=f"other than loopback needs {TOKEN_ENV}")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-text-chars", type=int, default=1000)
    parser.add_argument("--max-upload-mb", type=float, default=10.0)
    parser.add_argument("--max-reference-seconds", type=float, default=60.0)
    parser.add_argument("--slots", type=int, default=1, help="requests generating at once")
    parser.add_argument("--max-queue", type=int, default=8, help="waiting requests before 429")
    parser.add_argument("--max-loaded-models", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, help="cap on audio codes per sentence (~46 ms each)")
    parser.add_argument("--model", action="append", default=[], metavar="ID=FOLDER",
                        help="serve another XTTS checkpoint folder under this id (repeatable)")
    parser.add_argument("--preload", action="append", default=[], metavar="ID", help="load this model at start")
    args = parser.parse_args(argv)
    setup_console()
    extra = {}
    for item in args.model:
        name, _, folder = item.partition("=")
        if not _ID.match(name) or not folder:
            raise XttsflowError(f"--model {item!r}: give ID=FOLDER with an id of letters, digits, '_', '.', '-'")
        extra[name] = Path(folder)
    token = os.environ.get(TOKEN_ENV) or None
    check_binding(args.host, token)
    try:
        config = ApiConfig(workdir=Path(args.workdir), host=args.host, port=args.port, token=token,
                           device=args.device, max_text_chars=args.max_text_chars,
                           max_upload_bytes=int(args.max_upload_mb * 2**20),
                           max_reference_seconds=args.max_reference_seconds, slots=args.slots,
                           max_queue=args.max_queue, max_loaded_models=args.max_loaded_models,
                           max_new_tokens=args.max_new_tokens, extra_models=extra, preload=args.preload)
    except ValueError as err:
        raise XttsflowError(f"api: bad option: {err}") from err
    catalog = Catalog(config.workdir, config.extra_models)
    for model_id in config.preload:
        catalog.model(model_id)  # an unknown --preload id stops here, with the ids there are
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info", workers=1)


if __name__ == "__main__":
    sys.exit(cli.run("api", main))
