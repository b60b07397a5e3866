"""faster-whisper (CTranslate2): one clip at a time, or many clips per batch (BatchedInferencePipeline)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import XttsflowError
from ..hub import hub_snapshot
from .backend import WHISPER_SAMPLE_RATE, Backend, merge_parts, resolve_batch_size, token_budget, word, worker_bytes
from .models import BUNDLED_PREFIX, model_params, resolve_model

if TYPE_CHECKING:  # annotations only (see backend.py)
    from .config import TranscribeConfig

#: What faster-whisper itself fetches of a model repository (faster_whisper.utils.download_model).
HUB_FILES = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*")
#: Device bytes per weight for each CTranslate2 compute type.
BYTES_PER_PARAM = {"float32": 4, "float16": 2, "bfloat16": 2, "int8_float16": 1, "int8_bfloat16": 1,
                   "int8_float32": 1, "int8": 1, "auto": 2, "default": 2}


class FasterWhisper(Backend):
    """A CTranslate2 model: a Whisper name, a local CTranslate2 folder or a bundled model."""

    name = "faster-whisper"
    distribution = "faster-whisper"

    @classmethod
    def fetch(cls, model: str) -> str:
        """A bundled model, a local CTranslate2 folder, or a name (large-v3) / hub repository from the hub cache."""
        from faster_whisper.utils import _MODELS

        repo_id = model if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model) else _MODELS.get(model)
        if model.startswith(BUNDLED_PREFIX) or Path(model).exists() or repo_id is None:
            return resolve_model(model)  # a folder that does not exist fails to load, naming it
        return str(hub_snapshot(repo_id, HUB_FILES, what=f"transcribe: faster-whisper {model}",
                                required=("model.bin", "config.json")))

    @classmethod
    def resolve_device(cls, device: str) -> str:
        if device != "auto":
            return device
        import ctranslate2  # ask CTranslate2: importing torch would cost each worker seconds

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"

    @classmethod
    def worker_memory(cls, cfg: TranscribeConfig) -> int:
        weights = model_params(cfg.model) * BYTES_PER_PARAM.get(cfg.compute_type, 2)
        return worker_bytes(weights, resolve_batch_size(cfg.batch_size, "cuda"))

    @classmethod
    def chunk_size(cls, cfg: TranscribeConfig, device: str) -> int:
        batch = resolve_batch_size(cfg.batch_size, device)
        return batch if batch > 1 else 4  # a batch per queue item keeps every batch full

    def __init__(self, cfg: TranscribeConfig, threads: int, device: str):
        import ctranslate2
        import faster_whisper

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every call at INFO
        self.cfg, self.batch_size = cfg, resolve_batch_size(cfg.batch_size, device)
        path = self.fetch(cfg.model)
        try:
            self.model = faster_whisper.WhisperModel(path, device=device, compute_type=cfg.compute_type,
                                                     cpu_threads=threads)
        except Exception as err:
            raise XttsflowError(f"transcribe: faster-whisper could not load model {cfg.model!r} ({err}) — "
                                "check the name (tiny ... large-v3), the network for a first download, or give "
                                "a local CTranslate2 model folder") from err
        self.pipeline = faster_whisper.BatchedInferencePipeline(self.model)
        self.multilingual = self.model.model.is_multilingual
        self.languages = set(self.model.supported_languages)
        ctranslate2.set_random_seed(0)  # temperature fallback samples: same input, same text

    def detect(self, audio: np.ndarray, candidates=None) -> tuple[str, float]:
        language, probability, every = self.model.detect_language(audio=audio)
        if candidates:
            language, probability = max((p for p in every if p[0] in candidates), key=lambda p: p[1],
                                        default=(language, probability))
        return language, float(probability)

    def decode_one(self, audio: np.ndarray, language: str) -> dict:
        parts, _ = self.model.transcribe(
            audio, language=language, beam_size=self.cfg.beam_size, vad_filter=False,
            condition_on_previous_text=self.cfg.condition_on_previous_text,
            word_timestamps=self.cfg.word_timestamps,
            max_new_tokens=token_budget(len(audio) / WHISPER_SAMPLE_RATE),
            # Keep every decode and its numbers: the screen flags silence and low confidence itself.
            no_speech_threshold=None, log_prob_threshold=None)
        return merge_parts([_part(p) for p in parts])

    def decode_batch(self, audios: list[np.ndarray], language: str) -> list[dict]:
        """Clips laid end to end, one clip per chunk (clip_timestamps), decoded batch_size chunks at a time."""
        rate, fps = WHISPER_SAMPLE_RATE, self.model.frames_per_second
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in audios])])
        clips = [{"start": offsets[i] / rate, "end": offsets[i + 1] / rate} for i in range(len(audios))]
        # BatchedInferencePipeline turns seconds back into samples with int(); the same rounding finds each clip.
        by_seek = {int(int(c["start"] * rate) / rate * fps): i for i, c in enumerate(clips)}
        parts, _ = self.pipeline.transcribe(
            np.concatenate(audios), language=language, clip_timestamps=clips, batch_size=self.batch_size,
            beam_size=self.cfg.beam_size, word_timestamps=self.cfg.word_timestamps,
            max_new_tokens=token_budget(max(len(a) for a in audios) / rate),
            without_timestamps=False)  # as one by one: the same tokens, so avg_logprob means the same
        grouped: list[list[dict]] = [[] for _ in audios]
        for part in parts:
            i = by_seek[part.seek]
            grouped[i].append(_part(part, offset=clips[i]["start"]))
        return [merge_parts(g) for g in grouped]

    def decode(self, audios: list[np.ndarray], language: str) -> list[dict]:
        # Chunks longer than Whisper's 30 s window would be cut in batched mode: those go one by one.
        batchable = [i for i, a in enumerate(audios) if len(a) < 30 * WHISPER_SAMPLE_RATE]
        results: list[dict | None] = [None] * len(audios)
        if self.batch_size > 1 and len(batchable) > 1:
            for i, result in zip(batchable, self.decode_batch([audios[i] for i in batchable], language),
                                 strict=True):
                results[i] = result
        return [r if r is not None else self.decode_one(a, language) for r, a in zip(results, audios, strict=True)]


def _part(segment, offset: float = 0.0) -> dict:
    return {"text": segment.text, "avg_logprob": segment.avg_logprob, "no_speech_prob": segment.no_speech_prob,
            "n_tokens": len(segment.tokens), "words": [word(w, offset) for w in segment.words or []]}
