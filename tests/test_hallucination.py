"""The hallucination and quality screen: each flag raised by a crafted case, none by clean speech."""

from __future__ import annotations

import pytest

from xttsflow.hallucination import ScreenConfig, flag_name, longest_repeat, normalise, screen

CLEAN = {"text": "The old lighthouse keeper climbed the spiral stairs every evening before sunset.",
         "compression_ratio": 1.1, "avg_logprob": -0.3, "no_speech_prob": 0.05, "language": "en",
         "language_probability": 1.0}
CFG = ScreenConfig()


def names(segment: dict, duration: float = 5.0, language: str = "en", cfg: ScreenConfig = CFG) -> list[str]:
    return [flag_name(f) for f in screen({**CLEAN, **segment}, duration, language, cfg)]


def test_clean_speech_raises_no_flag():
    assert screen(CLEAN, 5.0, "en", CFG) == []
    # Short natural repetition and a short text with repeated words are speech, not loops.
    assert names({"text": "No, no, no. I said the boat, the boat by the harbour wall."}, 4.0) == []


@pytest.mark.parametrize(("change", "flag"), [
    ({"compression_ratio": 2.9}, "compression_ratio"),
    ({"avg_logprob": -1.4}, "avg_logprob"),
    ({"no_speech_prob": 0.85}, "no_speech_prob"),
])
def test_whisper_confidence_flags(change, flag):
    assert names(change) == [flag]
    just_inside = {k: (2.4 if flag == "compression_ratio" else -1.0 if flag == "avg_logprob" else 0.6)
                   for k in change}
    assert names(just_inside) == []


def test_repeated_ngram():
    flags = screen({**CLEAN, "text": "Thank you so much. Thank you so much. Thank you so much. Thank you so much."},
                   5.0, "en", CFG)
    assert [flag_name(f) for f in flags] == ["repetition", "unique_words"]
    assert "'thank you so much' x4" in flags[0]
    assert names({"text": "Go, go, go, go, go!"}, 2.0) == ["repetition"]
    assert longest_repeat(["a", "b", "c", "a", "b", "c", "a", "b", "c"]) == (3, "a b c")


def test_low_unique_word_share():
    text = "yes no yes maybe no yes no maybe yes no"  # 3 distinct words in 10, no run longer than 2
    assert names({"text": text}, 4.0) == ["unique_words"]
    assert names({"text": text}, 4.0, cfg=ScreenConfig(min_unique_word_share=0.2)) == []


@pytest.mark.parametrize(("text", "language"), [
    ("Thanks for watching!", "en"),
    ("Please subscribe to my channel.", "en"),
    ("Legendas pela comunidade Amara.org", "pt"),
    ("Obrigado por assistir.", "pt"),
    ("Sous-titres réalisés par la communauté d'Amara.org", "fr"),
    ("Untertitel im Auftrag des ZDF für funk, 2017", "de"),
    ("字幕由Amara.org社区提供", "zh-cn"),
])
def test_known_hallucination_phrases(text, language):
    assert "known_phrase" in names({"text": text}, 2.0, language)


def test_known_phrases_are_per_language_and_extendable():
    assert "known_phrase" not in names({"text": "Obrigado por assistir."}, 2.0, "en")
    cfg = ScreenConfig(extra_phrases={"en": ["Brought to you by the letter Q"]})
    assert "known_phrase" in names({"text": "This was brought to you by the letter Q."}, 3.0, cfg=cfg)


def test_characters_per_second_bounds():
    assert names({"text": "Okay."}, 10.0) == ["chars_per_second"]  # text on a long, mostly silent clip
    fast = "The old lighthouse keeper climbed the spiral stairs every evening before sunset. " * 2
    assert names({"text": fast, "compression_ratio": 1.5}, 2.0) == ["chars_per_second"]
    assert names({"text": ""}, 10.0) == []  # empty text is the dataset stage's own filter


def test_language_mismatch():
    assert names({"language": "pt", "language_probability": 0.93}) == ["language"]
    assert names({"language": "pt", "language_probability": 0.3}) == []  # not sure enough
    assert names({"text": "船长每天晚上都爬上螺旋楼梯去点灯塔的灯", "language": "zh", "language_probability": 0.99},
                 4.0, "zh-cn") == []


def test_unspaced_languages_count_characters():
    assert "repetition" in names({"text": "谢谢谢谢谢谢谢谢", "language": "zh"}, 3.0, "zh-cn")


def test_every_flag_names_its_check_and_value():
    flags = screen({**CLEAN, "compression_ratio": 3.2, "avg_logprob": -1.5, "no_speech_prob": 0.9,
                    "text": "Thanks for watching. Thanks for watching. Thanks for watching. Thanks for watching."},
                   1.0, "en", CFG)
    assert {flag_name(f) for f in flags} == {"compression_ratio", "avg_logprob", "no_speech_prob", "repetition",
                                             "unique_words", "known_phrase", "chars_per_second"}
    assert "compression_ratio: 3.20 > 2.4" in flags


def test_normalise():
    assert normalise("  Thanks   for WATCHING!!  ") == "thanks for watching"
    assert normalise("Amara.org") == "amara.org"


def test_every_xtts_language_has_its_phantom_phrases():
    from xttsflow.hallucination import KNOWN_PHRASES
    from xttsflow.textnorm import XTTS_LANGUAGES

    assert set(XTTS_LANGUAGES) <= set(KNOWN_PHRASES)
    cfg = ScreenConfig()
    for language, text, found in [
        ("pt", "Legendas pela comunidade Amara.org", "amara.org"),
        ("pt", "Obrigado por assistir!", "obrigado por assistir"),
        ("de", "Untertitel im Auftrag des ZDF, 2017", "untertitel im auftrag des zdf"),
        ("ja", "ご視聴ありがとうございました", "ご視聴ありがとうございました"),
        ("tr", "Abone olmayı unutmayın.", "abone olmayı unutmayın"),
        ("zh-cn", "谢谢观看", "谢谢观看"),
    ]:
        flags = screen({"text": text}, 2.0, language, cfg)
        assert f"known_phrase: {found!r}" in flags, (language, flags)
    # A phrase is only another language's phantom: Portuguese credits are real words in an English talk.
    assert not [f for f in screen({"text": "Thanks for watching the ships, he said."}, 3.0, "pt", cfg)
                if f.startswith("known_phrase")]
