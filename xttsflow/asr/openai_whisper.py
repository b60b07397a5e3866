"""openai-whisper (PyTorch): a model name or a local checkpoint (.pt); fp16 on GPU, one clip at a time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..devices import resolve_device
from ..errors import XttsflowError
from ..hub import Remote, fetch_all
from .backend import WHISPER_SAMPLE_RATE, Backend, merge_parts, resolve_batch_size, token_budget, word, worker_bytes
from .models import BUNDLED_PREFIX, model_params

if TYPE_CHECKING:  # annotations only (see backend.py)
    from .config import TranscribeConfig


#: openai-whisper's download host; XTTSFLOW_WHISPER_MIRROR replaces it (a mirror, or a stand-in in tests).
WHISPER_HOST = "https://openaipublic.azureedge.net"


class OpenAIWhisper(Backend):
    """A PyTorch Whisper model."""

    name = "openai-whisper"
    distribution = "openai-whisper"

    @classmethod
    def fetch(cls, model: str) -> str:
        """A local checkpoint as given, or a name's checkpoint from openai-whisper's own URLs into its cache.

        openai-whisper's own download keeps nothing of an interrupted file; this one resumes it.
        """
        import whisper

        if model not in whisper._MODELS or Path(model).exists():
            return model
        url = whisper._MODELS[model]
        digest = url.split("/")[-2]  # openai-whisper's URLs carry the file's sha256
        mirror = os.environ.get("XTTSFLOW_WHISPER_MIRROR")
        if mirror:
            url = mirror.rstrip("/") + url[len(WHISPER_HOST):]
        cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
        dest = Path(cache) / "whisper" / os.path.basename(url)
        fetch_all([Remote(dest.name, url, dest, None, f"sha256:{digest}")], f"transcribe: openai-whisper {model}")
        return str(dest)

    @classmethod
    def resolve_device(cls, device: str) -> str:
        return resolve_device("auto") if device == "auto" else device

    @classmethod
    def worker_memory(cls, cfg: TranscribeConfig) -> int:
        # openai-whisper keeps fp32 weights even with fp16 (it casts on the fly).
        return worker_bytes(model_params(cfg.model) * 4, resolve_batch_size(cfg.batch_size, "cuda"))

    @classmethod
    def chunk_size(cls, cfg: TranscribeConfig, device: str) -> int:
        return 4  # it decodes clip by clip: a few per queue item spread them over the workers

    def __init__(self, cfg: TranscribeConfig, threads: int, device: str):
        import torch
        import whisper

        if cfg.model.startswith(BUNDLED_PREFIX):
            raise XttsflowError(f"transcribe: {cfg.model} is a CTranslate2 model — use it with "
                                "backend faster-whisper, or give openai-whisper a model name or checkpoint")
        if device == "cpu":
            torch.set_num_threads(threads)
        self.cfg, self.device = cfg, device
        path = self.fetch(cfg.model)
        try:
            self.model = whisper.load_model(path, device=device)
            if path != cfg.model:  # loaded from a path, whisper would not know the name's word-timing heads
                self.model.set_alignment_heads(whisper._ALIGNMENT_HEADS[cfg.model])
        except Exception as err:
            raise XttsflowError(f"transcribe: openai-whisper could not load model {cfg.model!r} ({err}) — "
                                "check the name (tiny ... large-v3), the network for a first download, or give "
                                "the path of a checkpoint (.pt)") from err
        self.multilingual = self.model.is_multilingual
        self.languages = set(whisper.tokenizer.LANGUAGES) if self.multilingual else {"en"}

    def detect(self, audio: np.ndarray, candidates=None) -> tuple[str, float]:
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self.model.dims.n_mels).to(self.device)
        _, probs = self.model.detect_language(mel.half() if self.device == "cuda" else mel)
        language = max((k for k in probs if not candidates or k in candidates), key=probs.get,
                       default=max(probs, key=probs.get))
        return language, float(probs[language])

    def decode(self, audios: list[np.ndarray], language: str) -> list[dict]:
        import torch
        import whisper

        results = []
        for audio in audios:
            torch.manual_seed(0)  # temperature fallback samples: same input, same text
            out = whisper.transcribe(
                self.model, audio, language=language, beam_size=self.cfg.beam_size, best_of=self.cfg.beam_size,
                fp16=self.device == "cuda", condition_on_previous_text=self.cfg.condition_on_previous_text,
                word_timestamps=self.cfg.word_timestamps, verbose=None,
                sample_len=token_budget(len(audio) / WHISPER_SAMPLE_RATE),
                no_speech_threshold=None, logprob_threshold=None)
            results.append(merge_parts([
                {"text": s["text"], "avg_logprob": s["avg_logprob"], "no_speech_prob": s["no_speech_prob"],
                 "n_tokens": len(s["tokens"]), "words": [word(w) for w in s.get("words", [])]}
                for s in out["segments"] if s["text"].strip()]))
        return results
