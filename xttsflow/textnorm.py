"""Transcript text -> the `normalized_text` XTTS trains on, and how XTTS's tokenizer sees that text.

Numbers are spelled out with num2words in the clip's language through the same expansion XTTS's own
tokenizer applies (so our column and the trainer agree); languages it lacks get plain num2words, and a
language num2words does not know keeps its digits.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from .languages import XTTS_LANGUAGES, same_language, xtts_language  # noqa: F401 - the dataset's names

# Typographic characters Whisper and subtitles use, mapped to the plain ones every tokenizer knows.
_TYPOGRAPHIC = str.maketrans({
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...",
    "|": " ",  # the LJSpeech column separator can never appear inside a column
})
_WHITESPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"\d")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")

#: Without a vocab.json, the characters (after XTTS's own cleaning, lower case) taken as speakable.
ALPHABET_PUNCTUATION = frozenset(".,!?;:'\"-()¡¿«»。，、！？")


def clean(text: str) -> str:
    """Unicode NFC, plain quotes/dashes, no control characters or '|', single spaces, stripped."""
    text = unicodedata.normalize("NFC", text or "").translate(_TYPOGRAPHIC)
    # Control and format characters (zero-width spaces, soft hyphens, BOMs) are invisible and unspeakable.
    if not text.isprintable():  # the common case skips this per-character pass
        text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
    return _WHITESPACE.sub(" ", text).strip()


#: Clock times (9:30, 14h30), years (a lone 1100-2099) and ordinals (per language, as XTTS's own expander
#: reads them, plus the Czech/German/Hungarian/Turkish "3." before a word): the digits whose spoken form
#: depends on what they mean. Config `dataset.numbers` says what to do with them (docs/dataset.md).
_TIME = re.compile(r"(?<![\d.,:])([01]?\d|2[0-3])(?::|h)([0-5]\d)(?![\d:]|[.,]\d)")
_YEAR = re.compile(r"(?<![\d.,:$£€])(1[1-9]\d\d|20\d\d)(?!\d|[.,:]\d|\s*%)")
_ORDINAL = {
    "en": r"\d+(?:st|nd|rd|th)\b", "es": r"\d+\.?[ºª]", "pt": r"\d+\.?[ºª]", "it": r"\d+[º°ª]",
    "fr": r"\d+(?:er|re|e|ème)\b", "nl": r"\d+(?:de|ste|e)\b", "ru": r"\d+-(?:й|я|е|ое|ье|го)",
    "ko": r"\d+(?:번째|째)", "de": r"\d+\.(?=\s+\w)", "cs": r"\d+\.(?=\s+\w)", "hu": r"\d+\.(?=\s+\w)",
    "tr": r"\d+\.(?=\s+\w)", "pl": r"\d+\.(?=\s+\w)",
}
#: Languages whose year reading differs from the cardinal (English "nineteen eighty-four", German
#: "neunzehnhundertvierundachtzig"); elsewhere a year is read as its cardinal number.
_YEAR_READING = ("en", "de", "nl")
#: How a clock time is read: the words between hours and minutes, and for a full hour.
_TIME_WORDS = {"en": ("", "o'clock"), "pt": ("e", "horas"), "es": ("y", "en punto"), "it": ("e", "in punto"),
               "fr": ("heures", "heures"), "de": ("Uhr", "Uhr"), "nl": ("uur", "uur")}


def _base(language: str | None) -> str:
    return (language or "").strip().lower().split("-")[0].split("_")[0]


def ambiguous_numbers(text: str, language: str | None) -> list[str]:
    """The years, ordinals and clock times in `text` ("year 1984", "time 9:30"): digits read by meaning."""
    if not _DIGITS.search(text):
        return []
    found = [f"time {m.group(0)}" for m in _TIME.finditer(text)]
    rest = _TIME.sub(" ", text)
    if pattern := _ORDINAL.get(_base(language)):
        found += [f"ordinal {m.group(0)}" for m in re.finditer(pattern, rest)
                  if not m.group(0).endswith(".") or rest[m.end():].strip()[:1].islower()]
        rest = re.sub(pattern, " ", rest)
    found += [f"year {m.group(0)}" for m in _YEAR.finditer(rest)]
    return found


def expand_numbers(text: str, language: str | None) -> str:
    """Digits spelled out as read in `language` (years and clock times too); digits stay where it has no words."""
    if not _DIGITS.search(text) or not language:
        return text
    base = _base(language)
    text = _TIME.sub(lambda m: _time_words(m, base), text)
    if full := _TIME_WORDS.get(base, ("", ""))[1]:  # "um 9:00 Uhr" says Uhr once
        text = re.sub(rf"\b{full} {full}\b", full, text)
    if base in _YEAR_READING:
        text = _YEAR.sub(lambda m: _num2words(m.group(0), base, to="year"), text)
    if base == "hi":  # num2words has no Hindi: XTTS's own expander fails on every digit
        return _NUMBER.sub(lambda m: _hindi(m.group(0)), text)
    if base in ("cs", "pl", "tr", "hu"):  # their ordinal dot at a sentence end is a full stop
        text = re.sub(r"(?<![\d.,])(\d+)\.(?=\s*$|\s+[^\w\s]|\s+[A-ZÀ-ÞĀ-Ž])",
                      lambda m: _num2words(m.group(1), base) + ".", text)
    if base in _MONTHS_GENITIVE:  # cs, pl "3. května": XTTS's expander has no ordinal dot for them ("tři.")
        text = _ORDINAL_BEFORE_WORD.sub(lambda m: _ordinal_dot(m, base), text)
    if base in _xtts_number_languages():
        try:
            return xtts_expand(text, base) if (xtts_expand := _xtts_number_expander()) else text
        except Exception:  # num2words raises bare exceptions per language (Czech ordinals): fall back below
            pass
    return _NUMBER.sub(lambda m: _num2words(m.group(0), base), text)


#: "N." before a word (before a capital or at a sentence end it is a full stop: spelled out above).
_ORDINAL_BEFORE_WORD = re.compile(r"(?<![\d.,])(\d{1,3})\.(?=\s+([^\W\d_]+))")
#: Month names in the genitive, which a date's ordinal agrees with ("3. května" = "třetího května").
_MONTHS_GENITIVE = {
    "cs": {"ledna", "února", "března", "dubna", "května", "června", "července", "srpna", "září", "října",
           "listopadu", "prosince"},
    "pl": {"stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca", "lipca", "sierpnia", "września",
           "października", "listopada", "grudnia"},
}
_CS_UNITS = ["", "první", "druhý", "třetí", "čtvrtý", "pátý", "šestý", "sedmý", "osmý", "devátý", "desátý",
             "jedenáctý", "dvanáctý", "třináctý", "čtrnáctý", "patnáctý", "šestnáctý", "sedmnáctý", "osmnáctý",
             "devatenáctý"]
_CS_TENS = ["", "", "dvacátý", "třicátý", "čtyřicátý", "padesátý", "šedesátý", "sedmdesátý", "osmdesátý",
            "devadesátý"]
_CS_HUNDREDS = ["", "stý", "dvoustý", "třístý", "čtyřstý", "pětistý", "šestistý", "sedmistý", "osmistý",
                "devítistý"]


def _czech_ordinal(n: int) -> str:
    """1-999 as a Czech ordinal, nominative masculine ("dvacátý první"); num2words has no Czech ordinals."""
    hundreds, rest = divmod(n, 100)
    words = [_CS_HUNDREDS[hundreds]]
    words += [_CS_UNITS[rest]] if rest < 20 else [_CS_TENS[rest // 10], _CS_UNITS[rest % 10]]
    return " ".join(w for w in words if w)


def _ordinal_dot(m: re.Match, base: str) -> str:
    """A Czech or Polish "N." before a word, as an ordinal: in the genitive before a month (a date),
    nominative masculine elsewhere (its noun's case and gender would need a parser)."""
    n = int(m.group(1))
    if n == 0:
        return m.group(0)
    words = _czech_ordinal(n) if base == "cs" else _num2words(str(n), base, to="ordinal")
    if m.group(2).lower() in _MONTHS_GENITIVE[base]:  # every word of the ordinal agrees with the month
        words = " ".join(_genitive(word, base) for word in words.split())
    return words


#: Genitive masculine endings of the adjectival ordinals: druhý -> druhého, třetí -> třetího; trzeci -> trzeciego.
_GENITIVE_ENDINGS = {"cs": (("ý", "ého"), ("í", "ího")), "pl": (("y", "ego"), ("i", "iego"))}


def _genitive(word: str, base: str) -> str:
    for ending, genitive in _GENITIVE_ENDINGS[base]:
        if word.endswith(ending):
            return word[: -len(ending)] + genitive
    return word


def _time_words(m: re.Match, base: str) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    between, full = _TIME_WORDS.get(base, ("", ""))
    spoken = _num2words(str(hours), base)
    if minutes == 0:
        return f"{spoken} {full}".strip()
    if base == "en" and minutes < 10:
        return f"{spoken} oh {_num2words(str(minutes), base)}"
    return " ".join(w for w in (spoken, between, _num2words(str(minutes), base)) if w)


def _hindi(number: str) -> str:
    from num_to_words import num_to_word

    try:
        return num_to_word(int(number.replace(",", "")), lang="hi", separator=" ")
    except (ValueError, KeyError, IndexError, TypeError, Exception):  # noqa: BLE001 - its errors are untyped
        return number


def normalize(text: str, language: str | None) -> str:
    """The `normalized_text` column: cleaned text with numbers spelled out in the clip's language."""
    return _WHITESPACE.sub(" ", expand_numbers(clean(text), language)).strip()


def _num2words(number: str, base: str, to: str = "cardinal") -> str:
    from num2words import num2words

    try:
        value = float(number.replace(",", ".")) if re.search(r"[.,]", number) else int(number)
        return num2words(value, lang=base, to=to)
    except (NotImplementedError, OverflowError, ValueError, KeyError, TypeError):
        return number


@functools.cache
def _xtts_number_expander():
    from TTS.tts.layers.xtts.tokenizer import expand_numbers_multilingual

    return expand_numbers_multilingual


@functools.cache
def _xtts_number_languages() -> frozenset[str]:
    from TTS.tts.layers.xtts import tokenizer

    return frozenset(tokenizer._ordinal_re) | {"zh"}


@dataclass(frozen=True)
class TextCheck:
    """What XTTS's trainer would make of a clip's text."""

    tokens: int  # text tokens the trainer counts against its 200-token limit (language token included)
    unsupported: str  # characters the tokenizer cannot encode (sorted, unique); "" when all are fine
    error: str | None = None  # XTTS's text cleaner failed: the trainer would drop this clip


class XttsText:
    """Counts tokens with XTTS's own VoiceBpeTokenizer; without a vocab.json, a character upper bound."""

    def __init__(self, vocab: str | None = None):
        from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

        self.vocab = str(vocab) if vocab else None
        self.tokenizer = VoiceBpeTokenizer(self.vocab)
        self.method = f"vocab:{self.vocab}" if self.vocab else "char-estimate"
        self._char_ok: dict[str, bool] = {}

    def check(self, text: str, language: str) -> TextCheck:
        """Tokens and unsupported characters of `text` as a metadata line hands it to the trainer."""
        # Coqui's ljspeech formatter keeps the line's newline in the text; XTTS's cleaner turns it into
        # one more [SPACE] token, so count it as the trainer will.
        text = text + "\n"
        lang = language.split("-")[0]
        try:
            cleaned = self.tokenizer.preprocess_text(text, lang)
            ids = self.tokenizer.encode(text, language) if self.vocab else None
        except Exception as err:  # the cleaner raises anything from num2words, pypinyin, cutlet
            detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            return TextCheck(0, "", f"XTTS's {language} text cleaner failed ({detail})")
        bad = "".join(sorted({ch for ch in cleaned if not self._speakable(ch)}))
        # Each BPE token covers at least one character, so characters + the language token bound the count.
        tokens = len(ids) if ids is not None else len(cleaned) + 1
        return TextCheck(tokens, bad)

    def strip_unsupported(self, text: str, unsupported: str) -> str:
        """`text` without the characters the tokenizer cannot encode (matched case-insensitively)."""
        kept = "".join(ch for ch in text if not any(c in unsupported for c in ch.lower() + ch))
        return _WHITESPACE.sub(" ", kept).strip()

    def _speakable(self, ch: str) -> bool:
        if ch.isspace():
            return True
        if ch not in self._char_ok:
            if self.vocab:
                self._char_ok[ch] = 1 not in self.tokenizer.tokenizer.encode(ch).ids  # id 1 is [UNK]
            else:
                self._char_ok[ch] = unicodedata.category(ch)[0] in "LM" or ch in ALPHABET_PUNCTUATION
        return self._char_ok[ch]
