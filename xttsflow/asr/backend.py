"""The interface every speech recogniser implements, and the parts of Whisper's output that all of them share.

A backend is a `Backend` subclass registered in xttsflow.asr.BACKENDS. Before any model is loaded the
stage asks the class what `device: auto` means for it, how much GPU memory one worker needs, how many
clips a worker takes at a time and which version is installed; an instance is one loaded model that
detects a clip's language and decodes clips into result dicts (the shape of `merge_parts`).
"""

from __future__ import annotations

import importlib.metadata
import zlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:  # annotations only: the config module imports the registry, which imports the backends
    from .config import TranscribeConfig

WHISPER_SAMPLE_RATE = 16000
#: Per-process CUDA context and allocator slack.
CUDA_CONTEXT_BYTES = 300 * 2**20
#: Token budget per second of audio (text + timestamp tokens; fast speech is ~5/s, CJK ~10/s). A
#: hallucination loop on a tone or music stops there instead of running to Whisper's limit.
MAX_TOKENS_PER_SECOND = 12
MIN_TOKENS = 32
#: Whisper's own cap on sampled tokens (n_text_ctx // 2); beyond it a prompt would not fit the context.
MAX_SAMPLE_TOKENS = 224


class Backend(ABC):
    """One speech recogniser. Class-level questions come before any model is loaded; an instance is a model."""

    #: Its value of `transcribe.backend`.
    name: ClassVar[str]
    #: The PyPI distribution whose version the transcript records (`backend_version`).
    distribution: ClassVar[str]

    #: Set by __init__: whether the model knows more than English, and the Whisper codes it knows.
    multilingual: bool
    languages: set[str]

    @classmethod
    def version(cls) -> str:
        return importlib.metadata.version(cls.distribution)

    @classmethod
    @abstractmethod
    def fetch(cls, model: str) -> str:
        """A local path for `model`: a bundled model's folder, a local path as given, or a model name
        downloaded once into its cache through xttsflow.hub (resumable, verified)."""

    @classmethod
    @abstractmethod
    def resolve_device(cls, device: str) -> str:
        """`auto` -> the device this library would run on ('cuda' or 'cpu'); anything else as given."""

    @classmethod
    @abstractmethod
    def worker_memory(cls, cfg: TranscribeConfig) -> int:
        """GPU bytes one model worker needs with these options (the worker plan divides free VRAM by it)."""

    @classmethod
    @abstractmethod
    def chunk_size(cls, cfg: TranscribeConfig, device: str) -> int:
        """How many clips one worker takes from the queue at a time."""

    @abstractmethod
    def __init__(self, cfg: TranscribeConfig, threads: int, device: str):
        """Load `cfg.model` on `device` with `threads` CPU threads; an XttsflowError naming the model if it cannot."""

    @abstractmethod
    def detect(self, audio: np.ndarray, candidates=None) -> tuple[str, float]:
        """The language (Whisper code) of a 16 kHz clip and its probability; the most probable of
        `candidates` (Whisper codes) when given."""

    @abstractmethod
    def decode(self, audios: list[np.ndarray], language: str) -> list[dict]:
        """One result per 16 kHz clip, in order, each in the shape of merge_parts()."""


def token_budget(seconds: float) -> int:
    return min(MAX_SAMPLE_TOKENS, int(MIN_TOKENS + MAX_TOKENS_PER_SECOND * seconds))


def resolve_batch_size(batch_size: int | str, device: str) -> int:
    """auto: 8 on GPU, where batching pays; 1 on CPU, where it costs ~17% more CPU per clip (docs/transcribe.md)."""
    if batch_size == "auto":
        return 8 if device == "cuda" else 1
    return int(batch_size)


def worker_bytes(weight_bytes: float, batch_size: int) -> int:
    """Weights, activations growing with the batch, and the CUDA context of one worker process."""
    return int(weight_bytes * (1.0 + 0.05 * batch_size) + CUDA_CONTEXT_BYTES)


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: UTF-8 size over zlib-compressed size."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def merge_parts(parts: list[dict]) -> dict:
    """Whisper's sub-segments of one clip -> one result (avg_logprob weighted by token count)."""
    text = "".join(p["text"] for p in parts).strip()
    if not parts:
        return {"text": "", "avg_logprob": None, "no_speech_prob": None, "compression_ratio": 0.0, "words": []}
    weights = np.array([max(1, p["n_tokens"]) for p in parts], float)
    return {
        "text": text,
        "avg_logprob": float(np.dot(weights, [p["avg_logprob"] for p in parts]) / weights.sum()),
        "no_speech_prob": float(max(p["no_speech_prob"] for p in parts)),
        "compression_ratio": compression_ratio(text),
        "words": [w for p in parts for w in p["words"]],
    }


def word(item, offset: float = 0.0) -> dict:
    """A word timestamp (an object or a dict) as {word, start, end, probability}, times relative to the clip."""
    get = item.get if isinstance(item, dict) else lambda k: getattr(item, k)
    start, end = (max(0.0, round(float(get(k)) - float(offset), 3)) for k in ("start", "end"))
    return {"word": get("word"), "start": start, "end": end, "probability": round(float(get("probability")), 4)}
