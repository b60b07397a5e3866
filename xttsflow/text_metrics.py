"""Word and character error rates after Whisper's own text normaliser (fair to the recogniser)."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=4)
def _normalizer(language: str):
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    if language.split("-")[0] == "en":
        return EnglishTextNormalizer()
    return BasicTextNormalizer(split_letters=language.split("-")[0] in ("zh", "ja", "ko"))


def normalize_for_scoring(text: str, language: str) -> str:
    """Whisper's own normaliser (English spelling/contractions, or the basic one): fair to the recogniser."""
    return " ".join(_normalizer(language)(text).split())


def edit_distance(ref: list, hyp: list) -> int:
    """Levenshtein distance between two token sequences."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_counts(reference: str, hypothesis: str, language: str) -> dict:
    """Word and character edits against the reference after normalising both sides."""
    ref, hyp = normalize_for_scoring(reference, language), normalize_for_scoring(hypothesis, language)
    return {"word_edits": edit_distance(ref.split(), hyp.split()), "words": len(ref.split()),
            "char_edits": edit_distance(list(ref), list(hyp)), "chars": len(ref)}


def word_error_rate(references: list[str], hypotheses: list[str], language: str = "en") -> float:
    """Corpus WER: word edits over reference words, after normalising both sides."""
    edits = words = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        counts = error_counts(ref, hyp, language)
        edits, words = edits + counts["word_edits"], words + counts["words"]
    return edits / max(words, 1)
