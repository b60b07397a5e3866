"""The hallucination and quality screen: per-segment flags, each with its reason (filtering is the dataset stage's).

Whisper invents text on silence, music and noise: subtitle credits, "thanks for watching", loops of one
phrase. Each check below catches one known pattern; thresholds come from config `transcribe.screen`.
A flag reads "<name>: <detail>", so counting by name is `flag.split(":")[0]`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import ClassVar

from pydantic import Field

from .options import Options

#: Phrases Whisper is known to produce on non-speech (from subtitle credits and video outros in its
#: training data), per language, compared after normalise(). "*" applies to every language. Sources: the
#: list collected in openai/whisper discussion #928 (as kept in JSchmie/ScrAIbe scraibe/hallucinations.py:
#: the Amara.org credits in nl/de/fr/it/es/pt/pl/zh, ZDF/WDR/SWR, QTSS, ST' 501, the Russian subtitle
#: editor credit, Turkish "abone olmayı unutmayın"), reports of silence outputs in other trackers
#: (amicalhq/amical#71 and Vexa-ai/vexa#617: ご視聴ありがとうございました, 次の動画でお会いしましょう;
#: PocketShell-io/pocketshell#452: 시청해주셔서 감사합니다), and the phrases issue 11 names.
KNOWN_PHRASES: dict[str, list[str]] = {
    "*": ["amara.org", "amara org"],
    "en": ["thanks for watching", "thank you for watching", "please subscribe", "subscribe to my channel",
           "like and subscribe", "subtitles by the amara.org community", "transcription by castingwords",
           "see you in the next video", "www.mooji.org"],
    "pt": ["legendas pela comunidade amara.org", "obrigado por assistir", "obrigada por assistir",
           "inscreva-se no canal", "legenda adriana zanotto", "legendado por",
           "transcrição e legendas pela comunidade de amara.org"],
    "es": ["subtítulos realizados por la comunidad de amara.org", "gracias por ver el video",
           "gracias por ver", "suscríbete al canal", "subtítulos por la comunidad de amara.org",
           "subtitulado por la comunidad de amara.org", "más información www.alimmenta.com"],
    "fr": ["sous-titres réalisés par la communauté d'amara.org", "merci d'avoir regardé cette vidéo",
           "sous-titrage st' 501", "sous-titrage st'501", "abonnez-vous", "par soustitreur.com"],
    "de": ["untertitel der amara.org-community", "untertitelung des zdf", "untertitel im auftrag des zdf",
           "untertitelung im auftrag des zdf", "vielen dank fürs zuschauen", "copyright wdr",
           "untertitel von stephanie geiges", "swr 2020", "swr 2021"],
    "it": ["sottotitoli creati dalla comunità amara.org", "grazie per la visione", "iscriviti al canale",
           "sottotitoli e revisione a cura di qtss", "sottotitoli a cura di qtss"],
    "nl": ["ondertiteling door de amara.org gemeenschap", "bedankt voor het kijken",
           "ondertitels ingediend door de amara.org gemeenschap", "ondertiteld door de amara.org gemeenschap"],
    "pl": ["napisy stworzone przez społeczność amara.org", "dziękuję za obejrzenie",
           "napisy wykonane przez społeczność amara.org", "www.multi-moto.eu"],
    "ru": ["субтитры сделал dimatorzok", "субтитры создавал dimatorzok", "продолжение следует",
           "спасибо за просмотр", "редактор субтитров", "корректор а.егорова"],
    "tr": ["altyazı m.k.", "izlediğiniz için teşekkürler", "abone olmayı unutmayın"],
    "cs": ["titulky vytvořil johnyx", "děkuji za pozornost"],
    "ja": ["ご視聴ありがとうございました", "チャンネル登録", "次の動画でお会いしましょう"],
    "zh-cn": ["字幕由amara.org社区提供", "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目", "谢谢观看",
              "小編字幕由amara.org社區提供"],
    "ko": ["시청해주셔서 감사합니다", "구독과 좋아요"],
    "ar": ["ترجمة نانسي قنقر", "شكرا للمشاهدة"],
    "hu": ["feliratok az amara.org közösségtől", "köszönöm a figyelmet"],
    "hi": ["देखने के लिए धन्यवाद"],
}

#: Languages written without spaces between words: repetition is counted over characters there.
UNSPACED = ("zh", "ja", "ko", "th")


class ScreenConfig(Options):
    """Config `transcribe.screen`; the defaults are Whisper's own fallback thresholds where it has one."""

    section: ClassVar[str] = "transcribe.screen"

    max_compression_ratio: float = 2.4
    min_avg_logprob: float = -1.0
    max_no_speech_prob: float = Field(0.6, ge=0, le=1)
    max_ngram_repeats: int = Field(3, ge=1)  # an n-gram (n <= 4) said more than this many times in a row
    min_unique_word_share: float = Field(0.4, ge=0, le=1)
    min_words_for_share: int = Field(8, ge=1)  # short texts repeat words naturally ("no, no, no")
    min_chars_per_second: float = Field(3.0, ge=0)  # letters and digits only (spaces and punctuation excluded)
    max_chars_per_second: float = Field(25.0, gt=0)
    min_language_probability: float = Field(0.5, ge=0, le=1)  # another language than expected, this sure
    extra_phrases: dict[str, list[str]] = Field(default_factory=dict)


def normalise(text: str) -> str:
    """Case-folded NFKC text with punctuation other than . ' - removed and spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch if (ch.isalnum() or ch in ".'-" or ch.isspace()) else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def _units(text: str, language: str | None) -> list[str]:
    norm = re.sub(r"[.'-]", "", normalise(text))
    if (language or "").split("-")[0] in UNSPACED:
        return [ch for ch in norm if not ch.isspace()]
    return norm.split()


def longest_repeat(units: list[str], max_n: int = 4) -> tuple[int, str]:
    """The most consecutive repetitions of any n-gram (n <= max_n), and that n-gram."""
    best, best_gram = 1, ""
    for n in range(1, max_n + 1):
        for start in range(len(units) - n):
            gram, count, i = units[start:start + n], 1, start + n
            while units[i:i + n] == gram:
                count, i = count + 1, i + n
            if count > best:
                best, best_gram = count, " ".join(gram)
    return best, best_gram


def phrases_for(language: str | None, cfg: ScreenConfig) -> list[str]:
    lang = (language or "").lower()
    keys = {"*", lang, lang.split("-")[0]}
    found = [p for key in keys for p in KNOWN_PHRASES.get(key, []) + cfg.extra_phrases.get(key, [])]
    return sorted({normalise(p) for p in found})


def screen(segment: dict, duration: float, language: str | None, cfg: ScreenConfig) -> list[str]:
    """Flags for one transcribed segment (text and Whisper's confidence figures); [] when it looks clean."""
    flags = [f"audio: {segment['error']}"] if segment.get("error") else []
    text = segment.get("text", "").strip()
    ratio, logprob, no_speech = (segment.get(k) for k in ("compression_ratio", "avg_logprob", "no_speech_prob"))
    if ratio is not None and ratio > cfg.max_compression_ratio:
        flags.append(f"compression_ratio: {ratio:.2f} > {cfg.max_compression_ratio}")
    if text and logprob is not None and logprob < cfg.min_avg_logprob:
        flags.append(f"avg_logprob: {logprob:.2f} < {cfg.min_avg_logprob}")
    if no_speech is not None and no_speech > cfg.max_no_speech_prob:
        flags.append(f"no_speech_prob: {no_speech:.2f} > {cfg.max_no_speech_prob}")
    if not text:
        return flags  # nothing more to judge; empty text is the dataset stage's own filter

    units = _units(text, language)
    repeats, gram = longest_repeat(units)
    if repeats > cfg.max_ngram_repeats:
        flags.append(f"repetition: {gram!r} x{repeats}")
    if len(units) >= cfg.min_words_for_share:
        share = len(set(units)) / len(units)
        if share < cfg.min_unique_word_share:
            flags.append(f"unique_words: {share:.2f} < {cfg.min_unique_word_share}")

    norm = normalise(text)
    for phrase in phrases_for(language, cfg):
        if phrase in norm:
            flags.append(f"known_phrase: {phrase!r}")
            break

    if duration > 0:
        cps = sum(ch.isalnum() for ch in text) / duration
        if cps < cfg.min_chars_per_second:
            flags.append(f"chars_per_second: {cps:.1f} < {cfg.min_chars_per_second}")
        elif cps > cfg.max_chars_per_second:
            flags.append(f"chars_per_second: {cps:.1f} > {cfg.max_chars_per_second}")

    detected, prob = segment.get("language"), segment.get("language_probability")
    if (detected and language and detected.split("-")[0] != language.split("-")[0] and prob is not None
            and prob >= cfg.min_language_probability):
        flags.append(f"language: detected {detected} (p={prob:.2f}), expected {language}")
    return flags


def flag_name(flag: str) -> str:
    """The check that raised a flag ("compression_ratio", "repetition", ...)."""
    return flag.split(":", 1)[0]
