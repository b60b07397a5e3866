"""One loaded model behind the stage's own rules: language checks, detection, one decode call per language."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..audio import read_audio
from ..errors import XttsflowError
from ..languages import XTTS_LANGUAGES
from . import BACKENDS
from .backend import WHISPER_SAMPLE_RATE, merge_parts
from .config import TranscribeConfig

#: XTTS-v2's languages in Whisper's codes (zh-cn is Whisper's zh).
XTTS_WHISPER_CODES = frozenset(code.split("-")[0] for code in XTTS_LANGUAGES)

log = logging.getLogger(__name__)


def whisper_language(language: str | None) -> str | None:
    """XTTS language codes -> Whisper's (zh-cn -> zh)."""
    return language.split("-")[0].lower() if language else None


class Transcriber:
    """One loaded model: `.transcribe(paths, language)` -> one result dict per file."""

    def __init__(self, cfg: TranscribeConfig, threads: int = 1):
        self.cfg = cfg
        backend = BACKENDS[cfg.backend]
        self.device = backend.resolve_device(cfg.device)
        start = time.perf_counter()
        self.impl = backend(cfg, max(1, threads), self.device)
        log.info("transcribe: loaded %s %s on %s in %.1f s", cfg.backend, cfg.model, self.device,
                 time.perf_counter() - start)
        self.backend, self.model_name, self.version = backend.name, cfg.model, backend.version()

    def transcribe(self, paths: list, language: str | None) -> list[dict]:
        language = whisper_language(language)
        if language and language not in self.impl.languages:
            only = "only knows English" if not self.impl.multilingual else "does not know this language"
            raise XttsflowError(f"transcribe: model {self.model_name} {only} ({language!r}) — use a multilingual "
                                "Whisper model (e.g. large-v3) or set the source's language / transcribe.language")
        results: list[dict | None] = [None] * len(paths)
        audios = {}
        for i, path in enumerate(paths):
            try:
                audios[i] = read_audio(path, WHISPER_SAMPLE_RATE)
            except (XttsflowError, OSError) as err:  # one unreadable clip must not cost the source's others
                log.warning("transcribe: %s", err)
                results[i] = {**merge_parts([]), "language": language, "language_probability": None,
                              "error": f"unreadable audio ({err})"}
        good = sorted(audios)
        detected = dict(zip(good, self._detect([audios[i] for i in good], forced=language), strict=True))
        # One decode call per language, so batches never mix languages.
        for lang in sorted({language or d[0] for d in detected.values()}):
            idx = [i for i in good if (language or detected[i][0]) == lang]
            for i, result in zip(idx, self.impl.decode([audios[i] for i in idx], lang), strict=True):
                results[i] = {**result, "language": detected[i][0], "language_probability": detected[i][1]}
        return results

    def detect_languages(self, paths: list) -> list[tuple[str, float]]:
        """Whisper's most probable language and its probability, per file (English-only models: en)."""
        return self._detect([read_audio(p, WHISPER_SAMPLE_RATE) for p in paths], forced=None)

    def _detect(self, audios: list[np.ndarray], forced: str | None) -> list[tuple[str, float]]:
        if not self.impl.multilingual:
            return [("en", 1.0)] * len(audios)
        if forced and not self.cfg.detect_language:
            return [(forced, 1.0)] * len(audios)
        # Only languages XTTS speaks: on synthetic or accented speech Whisper's first guess is often one it
        # could never train (espeak-ng's Portuguese: "la" at p=0.2), while the language meant is close behind.
        return [self.impl.detect(a, XTTS_WHISPER_CODES) for a in audios]


def make_transcriber(cfg: TranscribeConfig, threads: int = 1) -> Transcriber:
    """A loaded Whisper model for config `transcribe:` (backend, model, device, compute_type, ...)."""
    return Transcriber(cfg, threads)
