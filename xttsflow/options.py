"""Every workflow option, once: one pydantic model per config section with its type, default and bounds.

config/schema.yaml documents each option in words; tests/test_config.py proves that both say the same.
The train: section's model (TrainConfig) is in settings.py, beside its environment layering, and the
registry of all sections is xttsflow.config.SECTION_MODELS. This module imports nothing heavier than
pydantic: the Snakefile builds the DAG with it, and every rule's env can import it.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator, create_model, model_validator

from . import TRAIN_SAMPLE_RATE, XTTS_MAX_WAV_SAMPLES
from .errors import XttsflowError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[a-zA-Z]{2,4})?$"
Speaker = Annotated[str, Field(pattern=NAME_PATTERN)]
Language = Annotated[str, Field(pattern=LANGUAGE_PATTERN)]
#: A source's language: a code, or "auto" (detected by the transcribe stage; xttsflow/languages.py).
SourceLanguage = Annotated[str, Field(pattern=r"^([a-z]{2,3}(-[a-zA-Z]{2,4})?|auto)$")]
Stage = Literal["ingest", "segment", "transcribe", "dataset", "train", "evaluate"]
AudioQuality = Literal["best", "128k", "64k"]
AUDIO_QUALITIES = get_args(AudioQuality)
Device = Literal["auto", "cpu", "cuda"]
#: Longest clip XTTS's trainer keeps, in seconds (it drops longer ones without a word).
XTTS_MAX_SECONDS = 11.6


class Options(BaseModel):
    """A config section: unknown keys are errors, and a built section never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: The section's key in the config, for messages.
    section: ClassVar[str] = ""


def because(reason: str) -> WrapValidator:
    """A field whose bounds have a reason: a value outside them fails with `reason`, not pydantic's words."""
    bounds = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError as err:
            if err.errors()[0]["type"] in bounds:
                raise ValueError(reason) from None
            raise

    return WrapValidator(check)


def ordered(section: str, values: Any, low: str, high: str) -> None:
    if not getattr(values, low) < getattr(values, high):
        raise ValueError(f"{section}.{low} ({getattr(values, low)}) must be smaller than "
                         f"{section}.{high} ({getattr(values, high)})")


# ---------- the top level ----------


class SourceEntry(Options):
    section: ClassVar[str] = "sources"

    # an entry gives one of url and path; the other stays absent (None), never null in the config
    url: str = Field(None, pattern=r"^https?://")
    path: str = Field(None, min_length=1)
    speaker: Speaker
    language: SourceLanguage = None
    # a clip of the target voice: its segments are screened against it, not the speaker's centroid
    reference: str = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_location(self) -> SourceEntry:
        if (self.url is None) == (self.path is None):
            raise ValueError("must have exactly one of url and path (oneOf in config/schema.yaml)")
        return self


class TopLevel(Options):
    """The options outside any section."""

    sources: list[SourceEntry] = Field(min_length=1)
    until: Stage = "evaluate"
    default_language: SourceLanguage = "pt"
    on_source_error: Literal["skip", "stop"] = "skip"


# ---------- sections ----------


class IngestConfig(Options):
    section: ClassVar[str] = "ingest"

    audio_quality: AudioQuality = "best"
    max_duration: float = Field(7200, gt=0)
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(2.0, ge=0)
    socket_timeout: float = Field(30, gt=0)
    archive: str = "raw/download-archive.txt"
    download_dir: str = "raw/downloads"
    js_runtime: str = Field("auto", pattern=r"^(auto|none|(deno|node|bun|quickjs)(:.+)?)$")
    cookies_file: str | None = None


class SegmentConfig(Options):
    section: ClassVar[str] = "segment"

    method: Literal["silence", "vad"] = "silence"
    min_duration: float = Field(5.0, gt=0)
    max_duration: float = Field(XTTS_MAX_SECONDS, gt=0)
    silence_thresh_dbfs: float = Field(-40.0, lt=0)
    min_silence_ms: Annotated[int, Field(ge=10), because("must be at least one 10 ms frame")] = 500
    keep_silence_ms: int = Field(250, ge=0)
    max_inner_pause_ms: int = Field(2000, ge=10)
    fade_ms: int = Field(10, ge=0)
    target_dbfs: float = Field(-20.0, lt=0)
    peak_limit_dbfs: float = Field(-1.0, le=0)
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    denoise: bool = False
    sample_rate: Literal[TRAIN_SAMPLE_RATE] = TRAIN_SAMPLE_RATE

    @model_validator(mode="after")
    def _consistent(self) -> SegmentConfig:
        if self.max_duration > XTTS_MAX_SECONDS:
            # A longer segment would be cut here only to be dropped by the dataset stage (XTTS trains on none).
            raise ValueError(f"segment.max_duration ({self.max_duration}) must be at most {XTTS_MAX_SECONDS} s: "
                             f"XTTS's trainer drops clips over {XTTS_MAX_WAV_SAMPLES} samples at "
                             f"{TRAIN_SAMPLE_RATE} Hz — lower it")
        ordered("segment", self, "min_duration", "max_duration")
        if self.max_inner_pause_ms < self.min_silence_ms:
            raise ValueError(f"segment.max_inner_pause_ms ({self.max_inner_pause_ms}) must not be below "
                             f"segment.min_silence_ms ({self.min_silence_ms}): a pause that always ends a segment "
                             "must first count as a pause")
        if 2 * self.fade_ms > 1000 * self.min_duration:
            raise ValueError(f"segment.fade_ms ({self.fade_ms}) must be between 0 and half of segment.min_duration "
                             f"({self.min_duration} s)")
        if not self.target_dbfs < self.peak_limit_dbfs:
            raise ValueError(f"segment.target_dbfs ({self.target_dbfs}) must be below segment.peak_limit_dbfs "
                             f"({self.peak_limit_dbfs}), which must be at most 0: a signal's RMS never exceeds its "
                             "peak")
        return self


class SpeakerEmbedConfig(Options):
    section: ClassVar[str] = "speaker_embed"

    device: Device = "auto"


_XTTS_LIMIT = (f"must be at most {XTTS_MAX_SECONDS} s: XTTS's trainer silently drops clips over "
               f"{XTTS_MAX_WAV_SAMPLES} samples at {TRAIN_SAMPLE_RATE} Hz — lower it")


class DatasetConfig(Options):
    section: ClassVar[str] = "dataset"

    min_duration: float = Field(3.0, gt=0)
    max_duration: Annotated[float, Field(gt=0, le=XTTS_MAX_SECONDS), because(_XTTS_LIMIT)] = XTTS_MAX_SECONDS
    max_text_tokens: int = Field(200, ge=1, le=200)
    vocab: str | None = None
    min_avg_logprob: float | None = -1.0
    max_no_speech_prob: float | None = Field(0.6, ge=0, le=1)
    reject_flagged: bool = True
    ignore_flags: list[str] = []
    speaker_similarity: float | None = Field(0.75, ge=-1, le=1)
    min_speech_ratio: float | None = Field(0.4, ge=0, le=1)
    language_mismatch: Literal["reject", "keep"] = "reject"
    min_language_probability: float = Field(0.5, ge=0, le=1)
    unsupported_chars: Literal["reject", "strip"] = "reject"
    numbers: Literal["expand", "drop"] = "expand"
    val_fraction: float = Field(0.1, ge=0, lt=1)
    min_val_clips: int = Field(1, ge=0)
    # the audio-quality screen (xttsflow/quality.py); any of them set adds the per-source quality job
    min_dnsmos_ovrl: float | None = Field(None, ge=1, le=5)
    min_dnsmos_bak: float | None = Field(None, ge=1, le=5)
    min_snr_db: float | None = None
    chars_per_second_iqr: float | None = Field(None, gt=0)
    window_similarity: float | None = Field(0.65, ge=-1, le=1)
    split_voices: bool = True

    @property
    def screens_quality(self) -> bool:
        return any(v is not None for v in (self.min_dnsmos_ovrl, self.min_dnsmos_bak, self.min_snr_db))

    @model_validator(mode="after")
    def _consistent(self) -> DatasetConfig:
        ordered("dataset", self, "min_duration", "max_duration")
        return self


class EvaluateConfig(Options):
    section: ClassVar[str] = "evaluate"

    language: Language | None = None
    speaker: str | None = None
    sentences: dict[Language, Annotated[list[Annotated[str, Field(min_length=1, max_length=500)]],
                                        Field(min_length=1)]] = {}
    num_sentences: int | None = Field(None, ge=1)
    references: list[Annotated[str, Field(min_length=1)]] = []
    num_references: int = Field(2, ge=1, le=5)
    reference_min_duration: float = Field(6.0, gt=0)
    reference_max_duration: float = Field(10.0, gt=0)
    reference_min_confidence: float = Field(0.5, ge=0, le=1)
    # how XTTS samples speech; None: what the checkpoint's config.json says (coqui's own defaults)
    seed: int = Field(1234, ge=0, le=2**32 - 1)
    temperature: float | None = Field(None, ge=0.01, le=5)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    length_penalty: float | None = Field(None, ge=-10, le=10)
    speed: float = Field(1.0, ge=0.25, le=4)
    #: Cap on audio codes per sentence (1 code = 1024 samples at 22050 Hz, ~46 ms); None: the model's limit.
    max_new_tokens: int | None = Field(None, ge=2)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")

    @model_validator(mode="after")
    def _consistent(self) -> EvaluateConfig:
        ordered("evaluate", self, "reference_min_duration", "reference_max_duration")
        return self


#: The evaluate: options that say how XTTS samples speech; the synthesize CLI and the REST API take them too.
SAMPLING = ("seed", "temperature", "top_k", "top_p", "repetition_penalty", "length_penalty", "speed",
            "max_new_tokens")
SamplingSettings = create_model(
    "SamplingSettings", __base__=Options,
    **{name: (EvaluateConfig.model_fields[name].annotation, EvaluateConfig.model_fields[name]) for name in SAMPLING},
)


# ---------- short messages ----------

#: What a value must be, by pydantic error type (the ones whose own words are not clear enough).
_MUST = {
    "int_type": "must be a whole number", "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number", "float_type": "must be a number", "float_parsing": "must be a number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false", "string_type": "must be text",
    "list_type": "must be a list", "dict_type": "must be a mapping", "model_type": "must be a mapping of options",
    "model_attributes_type": "must be a mapping of options", "missing": "is required",
}


def unknown_key(path: str, allowed: list[str]) -> str:
    """`path` is no option: say which are (or how many, for a long list), and the closest one."""
    name = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    listed = ", ".join(allowed) if len(allowed) <= 16 else f"the {len(allowed)} in config/schema.yaml"
    return f"{path} is not an option (allowed: {listed})" + (f" — did you mean {close[0]}?" if close else "")


def problems(err: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """One short line per problem: the key path, what is wrong, what is allowed."""
    lines = []
    for item in err.errors():
        loc = [p for p in item["loc"] if p != "[key]"]
        path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        kind, ctx, value = item["type"], item.get("ctx", {}), item.get("input")
        if kind == "extra_forbidden":
            lines.append(unknown_key(path, _fields_at(model, loc[:-1])))
            continue
        if kind in ("value_error", "assertion_error"):
            message = str(ctx.get("error", item["msg"]))
            if not loc:  # a check across options: its message names them
                section = prefix.rstrip(".")
                lines.append(message if message.startswith(f"{section}.") else f"{section}: {message}")
                continue
        else:
            message = _must(kind, ctx, item["msg"])
        got = "" if kind == "missing" or isinstance(value, dict) else f" (got {_short(value)})"
        separator = " " if message.startswith(("must ", "is ")) else ": "
        lines.append(f"{path.rstrip('.')}{separator}{message}{got}")
    return lines


def _must(kind: str, ctx: dict, msg: str) -> str:
    if kind in _MUST:
        return _MUST[kind]
    if kind == "greater_than":
        return "must be positive" if ctx["gt"] == 0 else f"must be greater than {ctx['gt']}"
    bounds = {
        "greater_than_equal": "be at least {ge}", "less_than": "be less than {lt}",
        "less_than_equal": "be at most {le}",
        "string_pattern_mismatch": "match {pattern!r}", "too_short": "have at least {min_length} item(s)",
        "too_long": "have at most {max_length} item(s)", "string_too_short": "have at least {min_length} character(s)",
        "string_too_long": "have at most {max_length} characters",
    }
    if kind in bounds:
        return "must " + bounds[kind].format(**ctx)
    return msg.replace("Input should be", "must be", 1)  # literal_error: "Input should be 'a' or 'b'", ...


def parse(model: type[Options], values: dict) -> Options:
    """`values` as a `model` section, checked as strictly as the config file is; XttsflowError names each key."""
    try:
        return model.model_validate(values, strict=True)
    except ValidationError as err:
        raise XttsflowError(summary(problems(err, model, f"{model.section}."))) from None


def summary(lines: list[str], most: int = 3) -> str:
    """At most `most` lines, each one problem, so that a bad config reads at a glance."""
    shown = [f"config: {line}" for line in lines[:most]]
    if len(lines) > most:
        shown[-1] += f" (and {len(lines) - most} more)"
    return "\n".join(shown)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(model: type[BaseModel] | None, loc: list) -> list[str]:
    """The option names of the (nested) model that `loc` points into."""
    for part in loc:
        if isinstance(part, str) and model is not None:
            field = model.model_fields.get(part)
            model = model_in(field.annotation) if field else None
    return list(model.model_fields) if model else []


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside a field's type (a nested section, a list of entries), if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := model_in(arg))), None)
