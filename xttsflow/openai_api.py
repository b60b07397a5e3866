"""OpenAI's text-to-speech API on the xttsflow server: POST /v1/audio/speech, GET /v1/models(/{id}).

The request is OpenAI's (`model`, `input`, `voice`, `response_format`, `speed`, `stream_format`), so the
programs that already speak it (the `openai` client, readers, assistants, dubbing tools) use a
fine-tuned voice by pointing their base URL at `http://host:port/v1`. What XTTS adds is optional:
`language`, `seed`, `temperature`, `top_k`, `top_p`. Anything else, and `instructions` (XTTS takes none),
is refused with a 400 in OpenAI's error shape ({"error": {"message", "type", "param", "code"}}), as is
every other error under /v1/.

Models: a model id from GET /v1/models (base, a run's name, an --model id); OpenAI's own names (tts-1,
tts-1-hd, gpt-4o-mini-tts) select the server's default model (--default-model; else the first fine-tuned
run, else base). Voices: a named voice (GET /voices: the fine-tuned speaker, XTTS's studio speakers), a
reference clip id, or one of OpenAI's voice names (alloy, echo, ...) or `default`, which select the
model's default voice (its fine-tuned speaker, else the evaluation references).

Streaming: `stream_format: "audio"` sends WAV or PCM as XTTS generates it (chunked), `"sse"` sends
OpenAI's `speech.audio.delta` events; without it the whole file comes at once (exact WAV sizes).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from . import audio_formats
from .api_ids import ID_PATTERN, LANGUAGE_PATTERN, NotFound
from .inference import Settings

#: OpenAI's model names; they select the server's default model.
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
#: OpenAI's built-in voice names; they select the model's default voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                 "shimmer", "verse")
FORMATS = tuple(audio_formats.FORMATS)
_ERROR_TYPES = {401: "invalid_request_error", 429: "requests"}
#: The names pydantic puts in an error's location for the branches of a union (`voice: str | VoiceRef`).
_BRANCHES = {"str", "VoiceRef"}
_ERROR_CODES = {401: "invalid_api_key", 404: "not_found", 411: "length_required", 413: "request_too_large",
                415: "unsupported_media_type", 429: "rate_limit_exceeded"}


def is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def problem(request: Request, status: int, message: str, headers: dict | None = None,
            param: str | None = None) -> JSONResponse:
    """An error in the shape of the API the request went to: OpenAI's under /v1/, {"detail"} elsewhere."""
    if not is_openai(request):
        return JSONResponse({"detail": message}, status, headers=headers)
    kind = "server_error" if status >= 500 else _ERROR_TYPES.get(status, "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": _ERROR_CODES.get(status)}}, status, headers=headers)


def validation_problem(request: Request, err: RequestValidationError) -> JSONResponse:
    """A request that fails the schema: OpenAI answers 400 (not FastAPI's 422), naming the parameter."""
    messages, param = [], None
    # An unrecognized or missing argument says more than "not a string" from the other branch of a union.
    ranked = sorted(err.errors(), key=lambda e: e.get("type") not in ("extra_forbidden", "missing"))
    for item in ranked:
        loc = [str(p) for p in item.get("loc", ()) if p != "body" and not isinstance(p, int) and p not in _BRANCHES]
        name = ".".join(loc) or None
        param = param or name
        if item.get("type") == "extra_forbidden":
            messages.append(f"Unrecognized request argument supplied: {name}")
        elif item.get("type") == "missing":
            messages.append(f"Missing required parameter: '{name}'.")
        elif item.get("type") == "json_invalid":
            messages.append("We could not parse the JSON body of your request — send a JSON object "
                            "(Content-Type: application/json)")
        else:
            messages.append(f"{name}: {item.get('msg')}" if name else str(item.get("msg")))
    return problem(request, 400, "; ".join(messages) or "invalid request", param=param)


def encode(samples, sample_rate: int, fmt: str) -> bytes:
    return audio_formats.encode(samples, sample_rate, fmt)


def media_type(fmt: str) -> str:
    return audio_formats.media_type(fmt)


class VoiceRef(BaseModel, extra="forbid"):
    id: str = Field(max_length=128, description="a voice name or clip id, as `voice` takes them")


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "xttsflow"
    kind: str = Field(description="base, finetuned or extra (as GET /models)")


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIProblem(BaseModel):
    error: OpenAIError


def install(app: FastAPI, service, errors: dict) -> None:
    """Add the /v1/ endpoints to the server's app (api.create_app), sharing its catalog, gate and token."""
    config, catalog = service.config, service.catalog
    voice_id = re.compile(ID_PATTERN)
    problems = {code: {"model": OpenAIProblem} for code in errors}

    class SpeechRequest(BaseModel, extra="forbid"):
        """OpenAI's speech request; the fields after `stream_format` are xttsflow's (optional)."""

        model: str = Field(pattern=ID_PATTERN, examples=["tts-1"],
                           description="a model id from GET /v1/models, or tts-1, tts-1-hd, gpt-4o-mini-tts (the "
                                       "server's default model)")
        input: str = Field(min_length=1, max_length=config.max_text_chars, examples=["Hello there."],
                           description="the text to speak")
        voice: str | VoiceRef = Field(examples=["alloy"], description="a voice from GET /voices, a reference clip "
                                      "id, an OpenAI voice name or `default` (the model's default voice)")
        instructions: str | None = Field(None, description="not supported by XTTS: refused when not empty")
        response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = Field(
            "mp3", description="pcm: raw 16-bit signed little-endian mono at 24 kHz, as OpenAI's")
        speed: float = Field(1.0, ge=0.25, le=4.0, allow_inf_nan=False)
        stream_format: Literal["audio", "sse"] | None = Field(
            None, description="audio: send wav/pcm as it is generated (chunked); sse: OpenAI's speech.audio.delta "
                              "events; omitted: the whole file at once")
        language: str | None = Field(None, pattern=LANGUAGE_PATTERN,
                                     description="XTTS language code (default: the voice's language)")
        seed: int = Field(1234, ge=0, lt=2**32)
        temperature: float | None = Field(None, ge=0.01, le=5, allow_inf_nan=False)
        top_k: int | None = Field(None, ge=1, le=1000)
        top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)

    audio_types = {audio_formats.media_type(f): {"schema": {"type": "string", "format": "binary"}} for f in FORMATS}

    @app.post("/v1/audio/speech", response_class=Response, dependencies=[Depends(service.authorized)],
              responses={200: {"content": {**audio_types, "text/event-stream": {"schema": {"type": "string"}}},
                               "description": "the audio in response_format (24 kHz mono)"}, **problems})
    async def speech(body: SpeechRequest) -> Response:
        fmt = body.response_format
        if body.instructions:
            return _bad("XTTS takes no instructions — leave out `instructions` (the voice comes from `voice`, the "
                        "manner of speaking from its reference clips)", "instructions")
        if not audio_formats.available(fmt):
            return _bad(f"response_format {fmt!r} is not available on this server (its FFmpeg has no "
                        f"{audio_formats.FORMATS[fmt][1]} encoder) — use wav, flac or pcm", "response_format")
        if body.stream_format and fmt not in audio_formats.STREAMABLE:
            return _bad(f"stream_format {body.stream_format!r} needs response_format wav or pcm ({fmt} is sent "
                        "whole) — leave out stream_format or choose wav/pcm", "stream_format")
        model_id = catalog.default_model(config.default_model) if body.model in OPENAI_MODELS else body.model
        model = catalog.model(model_id)  # 404 before any work
        name = body.voice if isinstance(body.voice, str) else body.voice.id
        if not voice_id.match(name):
            return _bad(f"voice {name[:80]!r} is not a voice id (letters, digits, '_', '.', '-'; no paths) — GET "
                        "/voices lists them", "voice")
        paths: list[Path] = []
        if name.lower() in (*OPENAI_VOICES, "default") and name not in catalog.voice_names(model):
            name = catalog.default_voice(model)
            if name is None:
                paths = catalog.references_for(model)
                if not paths:
                    raise NotFound(f"model {model_id!r} has no default voice — give a voice from GET /voices")
        language = body.language or catalog.default_language(name)
        settings = Settings(seed=body.seed, temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                            speed=body.speed, max_new_tokens=config.max_new_tokens)
        return await service.respond(
            lambda: service.prepare(model_id, body.input, language, name, paths), settings, fmt,
            stream=body.stream_format == "audio", sse=body.stream_format == "sse",
            headers={"X-Model": model_id, "X-Voice": name or "references", "X-Language": language})

    @app.get("/v1/models", response_model=OpenAIModelList, responses=problems,
             dependencies=[Depends(service.authorized)])
    def list_models() -> OpenAIModelList:
        return OpenAIModelList(data=[_model(i, m) for i, m in catalog.models().items()])

    @app.get("/v1/models/{model_id}", response_model=OpenAIModel, responses=problems,
             dependencies=[Depends(service.authorized)])
    def get_model(model_id: Annotated[str, PathParam(pattern=ID_PATTERN)]) -> OpenAIModel:
        return _model(model_id, catalog.model(model_id))


def _model(model_id: str, model: dict) -> OpenAIModel:
    weights = Path(model["path"]) / "model.pth"
    created = int(os.stat(weights).st_mtime) if weights.is_file() else 0
    return OpenAIModel(id=model_id, created=created, kind=model["kind"])


def _bad(message: str, param: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": None}}, 400)
