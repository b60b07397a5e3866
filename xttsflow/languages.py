"""Which languages this installation can take through the workflow, and `language: auto` per source.

Config time (xttsflow/frontends.py): a language XTTS-v2 does not speak, or one whose text front end needs a
package that is not installed, stops the run before any job, with the reason (never a crash mid-training).
Transcribe time: `language: auto` detects a source's language over several of its segments (Whisper's
probabilities summed), records it, and the per-clip screen flags clips detected as another language.
"""

from __future__ import annotations

import logging
from collections import defaultdict

log = logging.getLogger(__name__)

#: The languages XTTS-v2 speaks, as its tokenizer and dataset configs name them.
XTTS_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "ja", "hu",
                  "ko", "hi")


def xtts_language(code: str | None) -> str | None:
    """A language code (Whisper's or the config's: en, pt-br, zh) as XTTS names it, or None if it has none."""
    if not code:
        return None
    base = code.strip().lower().split("-")[0].split("_")[0]
    name = "zh-cn" if base == "zh" else base
    return name if name in XTTS_LANGUAGES else None


def same_language(a: str | None, b: str | None) -> bool:
    """True when two codes name one language (regions ignored: pt == pt-br, zh == zh-cn)."""
    def base(code):
        return (code or "").strip().lower().split("-")[0].split("_")[0]

    return base(a) == base(b)


AUTO = "auto"
#: espeak-ng voices for the XTTS languages (tests, benchmarks and the Portuguese demo speak with them).
ESPEAK_VOICES = {"en": "en-us", "es": "es", "fr": "fr-fr", "de": "de", "it": "it", "pt": "pt-br",
                 "pl": "pl", "tr": "tr", "ru": "ru", "nl": "nl", "cs": "cs", "ar": "ar", "zh-cn": "cmn",
                 "hu": "hu", "ko": "ko", "ja": "ja", "hi": "hi"}
#: Segments a source's language is detected over (the longest ones: more speech, surer answers).
DETECT_SEGMENTS = 5


def config_languages(config: dict) -> list[str]:
    """Every language code a config names: sources, default_language, transcribe and evaluate."""
    codes = [s.get("language") for s in config.get("sources") or [] if isinstance(s, dict)]
    codes += [config.get("default_language"), (config.get("transcribe") or {}).get("language"),
              (config.get("evaluate") or {}).get("language")]
    return [c for c in codes if isinstance(c, str)]


def vote(detections: list[tuple[str | None, float | None, float]], segments: int = DETECT_SEGMENTS) -> dict:
    """A source's language from per-segment (language, probability, duration): over its `segments` longest
    segments, the language with the highest summed probability; with every segment's answer, recorded."""
    chosen = sorted((d for d in detections if d[0]), key=lambda d: -d[2])[:segments]
    scores: dict[str, float] = defaultdict(float)
    for language, probability, _ in chosen:
        scores[language] += probability if probability is not None else 1.0
    if not scores:
        return {"language": None, "segments": 0, "scores": {}}
    best = max(scores, key=scores.get)
    return {"language": best, "segments": len(chosen),
            "scores": {k: round(v / len(chosen), 3) for k, v in sorted(scores.items(), key=lambda kv: -kv[1])}}


def detect_source(transcriber, paths: list, segments: int = DETECT_SEGMENTS) -> dict:
    """vote() over Whisper's detection on the given files (benchmarks; the stage votes on its transcripts)."""
    import soundfile as sf

    detected = transcriber.detect_languages(paths)
    return vote([(lang, p, sf.info(str(path)).duration) for (lang, p), path in zip(detected, paths, strict=True)],
                segments)
