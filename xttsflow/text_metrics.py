"""Word and character error rates after a per-language normaliser that keeps number readings apart.

Both sides get their digits spelled out by the workflow's own expander (xttsflow.textnorm, the reading
the dataset trains on), then Whisper's normaliser of that language without its number standardiser:
Whisper's English one rewrites "nineteen eighty-four" and "one thousand nine hundred eighty-four" to one
string (and merges neighbouring numbers), which would hide a wrong reading of a year, a time or an ordinal.
"""

from __future__ import annotations

import functools

from .textnorm import expand_numbers

#: Languages written without spaces: their errors are counted per character (Whisper's split_letters).
UNSPACED = ("zh", "ja", "ko")


@functools.lru_cache(maxsize=8)
def _normalizer(language: str):
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    if language.split("-")[0] == "en":
        normalizer = EnglishTextNormalizer()
        normalizer.standardize_numbers = lambda text: text  # spelled-out numbers stay as they were read
        return normalizer
    return BasicTextNormalizer(split_letters=language.split("-")[0] in UNSPACED)


def normalize_for_scoring(text: str, language: str) -> str:
    """Digits spelled out in `language`, then Whisper's normaliser for it (English spelling, or the basic one)."""
    return " ".join(_normalizer(language)(expand_numbers(text, language)).split())


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
