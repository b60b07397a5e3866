"""Text normalisation per language and XTTS's tokenizer view of a clip's text."""

from __future__ import annotations

import pytest

from xttsflow.textnorm import XttsText, clean, normalize, same_language, xtts_language


@pytest.mark.parametrize(("text", "expected"), [
    ("  Hello\n\tworld  ", "Hello world"),
    ("cafe\u0301", "café"),  # decomposed e + combining acute -> one NFC character
    ("\u201cQuoted\u201d \u2013 it\u2019s\u2026", '"Quoted" - it\'s...'),
    ("zero\u200bwidth\u00adsoft", "zerowidthsoft"),
    ("a|b", "a b"),  # the LJSpeech column separator never survives
    ("non\u00a0breaking", "non breaking"),
])
def test_clean(text, expected):
    assert clean(text) == expected


@pytest.mark.parametrize(("text", "language", "expected"), [
    ("I have 25 apples.", "en", "I have twenty-five apples."),
    ("It costs $5, the 2nd time.", "en", "It costs five dollars, the second time."),
    ("Tenho 25 anos e 3,5 quilos.", "pt", "Tenho vinte e cinco anos e três vírgula cinco quilos."),
    ("Tenho 25 anos.", "pt-br", "Tenho vinte e cinco anos."),
    ("Ich habe 1.000 Bücher.", "de", "Ich habe eintausend Bücher."),
    ("Il a 21 ans.", "fr", "Il a vingt et un ans."),
    ("У меня 3 кошки.", "ru", "У меня три кошки."),
    ("Jeg har 3 katter.", "no", "Jeg har tre katter."),  # not an XTTS language: plain num2words
    ("Room 12 now.", "xx", "Room 12 now."),  # a language num2words does not know keeps its digits
    ("No digits here.", None, "No digits here."),
])
def test_normalize_spells_numbers_in_the_clips_language(text, language, expected):
    assert normalize(text, language) == expected


def test_language_codes():
    assert xtts_language("zh") == "zh-cn" and xtts_language("pt-BR") == "pt" and xtts_language("EN") == "en"
    assert xtts_language("sv") is None and xtts_language(None) is None
    assert same_language("pt", "pt-br") and not same_language("pt", "es")


def test_token_estimate_is_an_upper_bound_of_the_real_tokenizer(tmp_path):
    from xttsflow.xtts_model import build_tokenizer

    vocab = tmp_path / "vocab.json"
    build_tokenizer(vocab)
    exact, estimate = XttsText(str(vocab)), XttsText()
    for text in ["The old lighthouse keeper climbed the spiral stairs.", "Hello, Mr. Smith!", "It costs 25 dollars."]:
        real, bound = exact.check(normalize(text, "en"), "en"), estimate.check(normalize(text, "en"), "en")
        assert real.unsupported == bound.unsupported == "" and real.error is None
        assert 0 < real.tokens <= bound.tokens
    # The count is the trainer's: the same tokenizer call XTTSDataset makes on a metadata line.
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    line = "The keeper smiled."
    assert exact.check(line, "en").tokens == len(VoiceBpeTokenizer(str(vocab)).encode(line + "\n", "en"))


def test_unsupported_characters_and_cleaner_failures():
    estimate = XttsText()
    assert estimate.check("He sang ♪ la la 🙂", "en").unsupported == "♪🙂"
    assert estimate.check("¿Qué tal? «Bien», dijo.", "es").unsupported == ""
    assert estimate.strip_unsupported("He sang ♪ la la 🙂 twice", "♪🙂") == "He sang la la twice"
    failed = estimate.check("नमस्ते 5", "hi")  # XTTS's Hindi cleaner cannot spell digits: the trainer would drop it
    assert failed.error and "hi text cleaner failed" in failed.error
