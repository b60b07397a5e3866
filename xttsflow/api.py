"""The inference REST API: POST /synthesize, GET /models, GET /voices, GET /references, GET /health
(+ /openapi.json); OpenAI's POST /v1/audio/speech and GET /v1/models (xttsflow.openai_api); GET / a page
to listen on (xttsflow/web/).

Safe by default: it binds 127.0.0.1, and refuses any other address unless a bearer token is set
(XTTSFLOW_API_TOKEN); text length, upload size and upload type are limited; request values only ever
select from models and clips the server listed itself, never name a path. Each model loads once per
process; a queue in front of the one generation slot keeps concurrent requests from exhausting GPU memory.

Run: `python -m xttsflow.api --workdir <workflow folder> [--host 127.0.0.1] [--port 8000]`.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time, and they
# use values local to create_app (the configured limits).
import asyncio
import base64
import binascii
import contextlib
import dataclasses
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
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from . import __version__, cli, openai_api, page, paths, streaming, voices
from .api_ids import ID_PATTERN, LANGUAGE_PATTERN, NotFound
from .atomic import read_json
from .audio import AUDIO_EXTENSIONS, probe
from .devices import resolve_device
from .errors import XttsflowError
from .inference import LOADS, Settings, get_synthesizer, loaded_models

log = logging.getLogger(__name__)

_ID = re.compile(ID_PATTERN)
UPLOAD_TYPES = ("audio/", "application/octet-stream")
TOKEN_ENV = "XTTSFLOW_API_TOKEN"
BASIC_CHALLENGE = 'Basic realm="xttsflow", charset="UTF-8"'
#: What a request body may hold beyond the reference upload itself (the form's other fields).
BODY_SLACK = 64 * 1024
#: The endpoints that generate audio: their requests queue for the generation slots.
GENERATING = ("/synthesize", "/v1/audio/speech")


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
    default_model: str | None = Field(None, description="what OpenAI's model names (tts-1, ...) select; default: "
                                      "the first fine-tuned run, else base")
    stream_chunk_codes: int = Field(20, ge=1, le=400, description="audio codes per streamed chunk (~46 ms each)")


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


class ModelVoices(BaseModel):
    model: str
    kind: str
    voices: list[str] = Field(description="named voices: the model's speakers_xtts.pth, and every fine-tuned "
                                          "speaker (cloned from the same clips on models that do not store it)")
    default: str | None = Field(description="the voice OpenAI's voice names (alloy, ...) select; None: the "
                                            "evaluation references")
    language: str = Field(description="the default voice's language (the default of `language`)")


class VoiceList(BaseModel):
    models: list[ModelVoices]
    clips: list[str] = Field(description="reference clip ids, usable as a voice too")


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

    def recorded_voices(self) -> dict[str, dict]:
        """Fine-tuned speakers the exports recorded (name -> clips, language); the first run in order wins."""
        found: dict[str, dict] = {}
        for model in self.models().values():
            if model["kind"] != "base":
                for name, record in voices.recorded_voices(model["path"]).items():
                    found.setdefault(name, record)
        return found

    def voice_names(self, model: dict) -> list[str]:
        """The fine-tuned speakers first (this model's, then other runs'), then the rest of its speakers file."""
        names = list(voices.recorded_voices(model["path"])) + list(self.recorded_voices())
        names += voices.speaker_names(model["path"])
        return list(dict.fromkeys(names))

    def default_voice(self, model: dict) -> str | None:
        """The model's own fine-tuned speaker, else any run's, else None (the evaluation references)."""
        mine = list(voices.recorded_voices(model["path"]))
        return mine[0] if mine else next(iter(self.recorded_voices()), None)

    def default_language(self, voice: str | None) -> str:
        record = self.recorded_voices().get(voice or "") or {}
        if record.get("language"):
            return record["language"]
        for path in sorted(self.workdir.glob("samples/*/references.json")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                return read_json(path)["language"]
        return "en"

    def default_model(self, configured: str | None) -> str:
        models = self.models()
        if configured:
            return configured
        return next((i for i, m in models.items() if m["kind"] == "finetuned"), "base")


class Gate:
    """A bounded queue in front of the generation slots: beyond max_queue waiting requests, answer 429.

    Requests are admitted (`admit`, by create_app's middleware) before their body is read, so a refused one
    costs no upload stored, spooled or probed; an admitted one keeps its place until its response is sent."""

    def __init__(self, slots: int, max_queue: int):
        self.slots, self.max_queue = slots, max_queue
        self.admitted = self.active = 0
        self._sem = asyncio.Semaphore(slots)

    @property
    def waiting(self) -> int:
        return self.admitted - self.active

    def admit(self) -> bool:
        if self.admitted >= self.slots + self.max_queue:
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        self.admitted -= 1

    async def acquire(self) -> None:
        await self._sem.acquire()
        self.active += 1

    def release(self) -> None:
        """Free a slot (from the event loop's thread: a streamed response frees it when generation ends)."""
        self.active -= 1
        self._sem.release()

    @contextlib.asynccontextmanager
    async def __call__(self):
        await self.acquire()
        try:
            yield
        finally:
            self.release()


@dataclasses.dataclass
class Prepared:
    """A request checked and ready to generate: model loaded, voice computed, text split into sentences."""

    model: str
    synthesizer: object
    voice: object
    language: str
    text: str
    sentences: list[str]


@dataclasses.dataclass
class Service:
    """What the endpoint modules (xttsflow.openai_api) share with create_app's own endpoints."""

    config: ApiConfig
    catalog: Catalog
    gate: Gate
    authorized: object  # the FastAPI dependency that checks the token
    prepare: object  # (model, text, language, voice, paths) -> Prepared, in a worker thread
    respond: object  # async (Prepared-making callable, settings, fmt, stream, sse, headers) -> Response


def create_app(config: ApiConfig):
    """The FastAPI application for one server process."""
    catalog = Catalog(config.workdir, config.extra_models)
    gate = Gate(config.slots, config.max_queue)
    uploads = Path(tempfile.mkdtemp(prefix="xttsflow-api-"))
    workdir = config.workdir.resolve()
    bearer = HTTPBearer(auto_error=False, description=f"required when the server has a token ({TOKEN_ENV})")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for model_id in config.preload:
            await run_in_threadpool(_load, model_id)
        yield
        shutil.rmtree(uploads, ignore_errors=True)

    # The docs and the schema are served below, behind the token like every endpoint but /health. Form
    # fields may be as large as the body limit, so an over-long text meets its own 422, not the parser's 400.
    app = FastAPI(title="xttsflow inference API", version=__version__, lifespan=lifespan,
                  description=__doc__.split("\n\n")[1].replace("\n", " "),
                  openapi_url=None, docs_url=None, redoc_url=None,
                  form_limits={"max_part_size": config.max_upload_bytes + BODY_SLACK})
    errors = {code: {"model": Problem} for code in (400, 401, 404, 411, 413, 415, 429)}

    def _token_ok(request: Request, credentials: HTTPAuthorizationCredentials | None) -> bool:
        if config.token is None:
            return True
        # Bearer for programs; Basic (any user name, the token as password) for a browser opening the page,
        # which then sends the same credentials with the page's own requests.
        given = credentials.credentials if credentials else _basic_password(request.headers.get("authorization"))
        return hmac.compare_digest(given.encode(), config.token.encode())

    def authorized(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not _token_ok(request, credentials):
            raise HTTPException(401, "missing or wrong bearer token — send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    def page_authorized(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not _token_ok(request, credentials):
            raise HTTPException(401, "this server needs its token: log in with any user name and the token as "
                                     "password", headers={"WWW-Authenticate": BASIC_CHALLENGE})

    def _load(model_id: str):
        model = catalog.model(model_id)
        return get_synthesizer(model["path"], device=config.device, max_loaded=config.max_loaded_models)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        # Refuse oversized or unsized uploads before reading a byte of them.
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return openai_api.problem(request, 411, "send a Content-Length header (chunked uploads are refused)")
            if int(length) > config.max_upload_bytes + BODY_SLACK:
                return openai_api.problem(request, 413, f"request body of {int(length)} bytes is over the limit of "
                                          f"{config.max_upload_bytes} bytes for the reference upload")
            if request.url.path in GENERATING:
                return await _admitted(request, call_next)
        return await call_next(request)

    async def _admitted(request: Request, call_next):
        """The queue's 429 before the body is read; the place is held until the last byte is sent."""
        if not gate.admit():
            return openai_api.problem(request, 429, f"server busy: {gate.waiting} requests queued — retry later",
                                      headers={"Retry-After": "2"})
        try:
            response = await call_next(request)
        except BaseException:
            gate.leave()
            raise
        response.body_iterator = _Then(response.body_iterator, gate.leave)
        return response

    def public(message: str) -> str:
        """A message without the server's own folders: a clip by its path in the workflow folder."""
        return message.replace(f"{workdir}{os.sep}", "")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(page_authorized)])
    def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(page_authorized)])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} — docs")

    @app.exception_handler(XttsflowError)
    async def bad_input(request: Request, err: XttsflowError):
        return openai_api.problem(request, 400, public(str(err)))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, err: NotFound):
        return openai_api.problem(request, 404, public(str(err)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        if openai_api.is_openai(request):
            return openai_api.problem(request, err.status_code, str(err.detail), headers=err.headers)
        return await http_exception_handler(request, err)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        if openai_api.is_openai(request):
            return openai_api.validation_problem(request, err)
        return await request_validation_exception_handler(request, err)

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

    @app.get("/voices", response_model=VoiceList, responses=errors, dependencies=[Depends(authorized)])
    def voice_list() -> VoiceList:
        out = []
        for model_id, model in catalog.models().items():
            default = catalog.default_voice(model)
            out.append(ModelVoices(model=model_id, kind=model["kind"], voices=catalog.voice_names(model),
                                   default=default, language=catalog.default_language(default)))
        return VoiceList(models=out, clips=catalog.clips())

    @app.get("/references", response_model=References, responses=errors, dependencies=[Depends(authorized)])
    def references() -> References:
        return References(clips=catalog.clips(), defaults=catalog.default_references())

    @app.post(
        "/synthesize",
        responses={200: {"content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
                         "description": "16-bit mono WAV at the model's rate (24 kHz); with stream=true sent "
                                        "as it is generated (chunked, the WAV sizes say 'unknown')"}, **errors},
        response_class=Response,
        dependencies=[Depends(authorized)],
    )
    async def synthesize(
        text: Annotated[str, Form(min_length=1, max_length=config.max_text_chars, description="what to say")],
        language: Annotated[str, Form(pattern=LANGUAGE_PATTERN, description="XTTS language code")] = "en",
        model: Annotated[str, Form(pattern=ID_PATTERN, description="a model id from GET /models")] = "base",
        voice: Annotated[str | None, Form(pattern=ID_PATTERN, description="a named voice from GET /voices")] = None,
        reference_id: Annotated[list[str] | None, Form(description="reference clip id(s) from GET /references; "
                                                       "default: the model's evaluation references")] = None,
        reference: Annotated[UploadFile | None, File(description="or: a reference clip of the voice "
                                                     f"({', '.join(AUDIO_EXTENSIONS)})")] = None,
        seed: Annotated[int, Form(ge=0, lt=2**32)] = 1234,
        temperature: Annotated[float | None, Form(ge=0.01, le=5, allow_inf_nan=False)] = None,
        top_k: Annotated[int | None, Form(ge=1, le=1000)] = None,
        top_p: Annotated[float | None, Form(gt=0, le=1, allow_inf_nan=False)] = None,
        speed: Annotated[float, Form(ge=0.25, le=4, allow_inf_nan=False)] = 1.0,
        stream: Annotated[bool, Form(description="send the WAV while it is generated (chunked)")] = False,
    ) -> Response:
        for clip_id in reference_id or []:
            if not _ID.match(clip_id):
                raise HTTPException(400, f"reference_id {clip_id[:80]!r} is not a clip id (letters, digits, '_', "
                                         "'.', '-'; no paths) — GET /references lists them")
        chosen = catalog.model(model)  # 404 before any work
        has_upload = reference is not None and bool(reference.filename)
        if voice and (reference_id or has_upload):
            raise XttsflowError("give a voice or reference clips (reference_id, reference), not both")
        settings = Settings(seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, speed=speed,
                            max_new_tokens=config.max_new_tokens)
        upload = await _save_upload(reference) if has_upload else None
        try:
            paths = [catalog.clip(i) for i in reference_id or []] + ([upload] if upload else [])
            if not voice:
                paths = paths or catalog.references_for(chosen)
                if not paths:
                    raise XttsflowError("no reference clip: send reference_id (GET /references) or upload a clip")
            # Streamed or not, the voice is computed before respond returns: the upload can go then.
            response = await respond(lambda: prepare(model, text, language, voice, paths), settings, "wav",
                                     stream=stream)
        except XttsflowError as err:
            if not upload:
                raise
            # the upload by the client's file name: the server's temporary folder is none of its business
            name = Path(reference.filename).name[:80]
            raise XttsflowError(str(err).replace(str(upload), f"{name!r} (the uploaded reference)")) from None
        finally:
            if upload:
                upload.unlink(missing_ok=True)
        log.info("synthesize %s/%s: %d chars -> %s", model, language, len(text), "streamed" if stream else
                 f"{response.headers['x-audio-seconds']} s in {response.headers['x-synthesis-seconds']} s")
        return response

    def prepare(model_id: str, text: str, language: str, voice: str | None, paths: list[Path]) -> Prepared:
        synthesizer = _load(model_id)
        synthesizer.check_language(language)
        conditioning = synthesizer.voice(paths) if paths else _named_voice(synthesizer, voice)
        return Prepared(model_id, synthesizer, conditioning, language, text, synthesizer.sentences(text, language))

    def _named_voice(synthesizer, name: str):
        """The model's own stored voice, else a fine-tuned speaker cloned from its clips, else a clip id."""
        if name in synthesizer.voice_names():
            return synthesizer.named_voice(name)
        recorded = catalog.recorded_voices().get(name)
        if recorded:
            return synthesizer.voice([catalog.clip(i) for i in recorded["clips"]])
        with contextlib.suppress(NotFound):
            return synthesizer.voice([catalog.clip(name)])
        raise NotFound(f"unknown voice {name!r} — GET /voices lists the voices of each model (a reference clip id "
                       "from GET /references works too)")

    async def respond(make: object, settings: Settings, fmt: str, stream: bool = False, sse: bool = False,
                      headers: dict | None = None) -> Response:
        """Generate behind the gate: the whole file, or chunks as they are decoded (`stream`, `sse`)."""
        headers = {"X-Seed": str(settings.seed), **(headers or {})}
        if not (stream or sse):
            async with gate():
                began = time.perf_counter()
                samples, rate = await run_in_threadpool(_speak_all, make, settings)
                took = time.perf_counter() - began
            body = await run_in_threadpool(openai_api.encode, samples, rate, fmt)
            seconds = len(samples) / rate
            return Response(body, media_type=openai_api.media_type(fmt), headers={
                **headers, "X-Audio-Seconds": f"{seconds:.3f}", "X-Synthesis-Seconds": f"{took:.3f}"})
        await gate.acquire()  # the middleware admitted it: here it waits for a slot
        try:
            prepared = await run_in_threadpool(make)  # every 4xx (voice, language, text) before the first byte
        except BaseException:
            gate.release()
            raise
        synth = prepared.synthesizer
        audio = streaming.AudioStream(
            lambda: synth.stream_chunks(prepared.text, prepared.language, prepared.voice, settings,
                                        chunk_codes=config.stream_chunk_codes, sentences=prepared.sentences),
            on_done=gate.release)
        rate = synth.sample_rate
        headers = {**headers, "X-Sample-Rate": str(rate), "Cache-Control": "no-store"}
        if sse:
            return StreamingResponse(streaming.sse_body(audio, fmt, rate), media_type="text/event-stream",
                                     headers=headers)
        body = streaming.wav_body(audio, rate) if fmt == "wav" else streaming.pcm_body(audio)
        return StreamingResponse(body, media_type=openai_api.media_type(fmt), headers=headers)

    def _speak_all(make, settings: Settings):
        prepared = make()
        synth = prepared.synthesizer
        return synth.synthesize(prepared.text, prepared.language, prepared.voice, settings), synth.sample_rate

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

    service = Service(config, catalog, gate, authorized, prepare, respond)
    openai_api.install(app, service, errors)
    page.install(app, page_authorized)
    return app


class _Then:
    """`body`'s chunks, then `done()` once: when they end or fail, the client goes away mid-stream, or the
    response is dropped before its first chunk (a generator's `finally` would not run then: a queue place lost)."""

    def __init__(self, body: AsyncIterator[bytes], done):
        self._body = body.__aiter__()
        self._done = weakref.finalize(self, done)

    def __aiter__(self) -> "_Then":
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._body.__anext__()
        except BaseException:  # StopAsyncIteration at the end, a cancellation, an error
            self._done()
            raise


def _basic_password(header: str | None) -> str:
    """The password of an `Authorization: Basic` header ('' when there is none or it is malformed)."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return ""


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
    parser.add_argument("--default-model", metavar="ID", help="the model OpenAI's model names (tts-1, tts-1-hd, "
                        "gpt-4o-mini-tts) select (default: the first fine-tuned run, else base)")
    parser.add_argument("--stream-chunk-codes", type=int, default=20,
                        help="audio codes per streamed chunk (~46 ms of audio each; smaller: earlier first audio)")
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
                           max_new_tokens=args.max_new_tokens, extra_models=extra, preload=args.preload,
                           default_model=args.default_model, stream_chunk_codes=args.stream_chunk_codes)
    except ValidationError as err:
        named = {"token": TOKEN_ENV}
        wrong = "; ".join(f"{named.get(e['loc'][0], '--' + str(e['loc'][0]).replace('_', '-'))}: {e['msg']}"
                          for e in err.errors())
        raise XttsflowError(f"bad option: {wrong}") from None
    if not config.workdir.is_dir():
        raise XttsflowError(f"--workdir {str(config.workdir)!r} is not a folder — give the workflow's folder")
    catalog = Catalog(config.workdir, config.extra_models)
    for model_id in [*config.preload, *([config.default_model] if config.default_model else [])]:
        catalog.model(model_id)  # an unknown --preload or --default-model id stops here, with the ids there are
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info", workers=1)


if __name__ == "__main__":
    sys.exit(cli.run("api", main))
