"""Multilingual transcription benchmark: bundled:base beside bundled:tiny.en, and language detection.

    .venv/bin/python benchmarks/bench_languages.py [--threads 2] [--pt-clips 10] [--detect] [--detect-clips 3]
                                                   [--voices 3]

1. English: the transcribed LJSpeech clips from ../shared/fixtures, WER and x real time of bundled:tiny.en
   (the baseline) and bundled:base, both through the stage's own Transcriber (beam 5, language forced).
2. Portuguese: espeak-ng's Brazilian voice (pt-br, the demo's) reading the Portuguese demo story
   (xttsflow.demo.DEMO_SENTENCES_PT), bundled:base with language pt; espeak-ng's Portuguese is hard for
   Whisper, so expect a high WER.
3. --detect: `language: auto` as the stage does it (xttsflow.languages.detect_source: several segments per
   source, the most probable language over all of them) on espeak-ng speech of each XTTS language's
   evaluation sentences (--detect-clips per source, sentences reused past the 5 there are); prints the detected
   language per source and the share correct, beside the alternative of one detection on the source's
   segments joined into one window of up to 30 s (longest first, 0.3 s silences between; `joined`).
   Beside each: the character error rate of bundled:base on the same clips with the language given (CER,
   the language's scoring normaliser), which says how well espeak-ng speaks that language *to Whisper base*
   without asking it to name the language; the share correct is then printed again over the languages
   whose CER is at most --intelligible (0.30: most characters right), the issue's "languages espeak-ng
   speaks well enough for Whisper base", chosen by a measure other than the detection itself (on the
   plain voice). --voices N gives each language N sources, in espeak-ng's plain voice and its +m3 and +f2
   variants at other rates and pitches (other "speakers"), so the share is over more than one source each.
Model loads are outside the timings; WER uses xttsflow.text_metrics (the scoring normaliser of that language).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xttsflow.asr.config import TranscribeConfig  # noqa: E402
from xttsflow.asr.transcriber import make_transcriber  # noqa: E402
from xttsflow.audio import write_wav  # noqa: E402
from xttsflow.demo import DEMO_SENTENCES_PT, espeak  # noqa: E402
from xttsflow.languages import ESPEAK_VOICES  # noqa: E402
from xttsflow.text_metrics import word_error_rate  # noqa: E402

FIXTURES = Path(os.environ.get("XTTSFLOW_FIXTURES", REPO.parent / "shared" / "fixtures"))


def timed(transcriber, paths: list[Path], language: str | None) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    results = transcriber.transcribe(paths, language)
    return time.perf_counter() - start, results


def line(label: str, seconds: float, audio_s: float, wer: float) -> None:
    print(f"  {label:34s} WER {100 * wer:5.1f}%   {seconds:6.2f} s   {audio_s / seconds:5.1f}x real time")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pt-clips", type=int, default=10)
    parser.add_argument("--detect", action="store_true", help="also measure language detection per language")
    parser.add_argument("--detect-clips", type=int, default=3, help="espeak-ng clips per source for --detect")
    parser.add_argument("--voices", type=int, default=1, choices=range(1, len(VOICE_VARIANTS) + 1),
                        help="--detect: sources per language, each in another espeak-ng voice variant and rate")
    parser.add_argument("--intelligible", type=float, default=0.30,
                        help="--detect: the CER (language given) up to which espeak-ng's speech counts as intelligible")
    args = parser.parse_args(argv)
    os.environ["TQDM_DISABLE"] = "1"
    work = Path(tempfile.mkdtemp(prefix="bench-languages-"))
    models = {name: make_transcriber(TranscribeConfig(model=f"bundled:{name}", device="cpu", workers=1,
                                                      batch_size=1), args.threads)
              for name in ("tiny.en", "base")}

    rows = [r.split("|") for r in (FIXTURES / "ljspeech" / "metadata.csv").read_text().splitlines() if r] \
        if (FIXTURES / "ljspeech" / "metadata.csv").is_file() else []
    if rows:
        paths = [FIXTURES / "ljspeech" / "wavs" / f"{r[0]}.wav" for r in rows]
        audio_s = sum(sf.info(str(p)).duration for p in paths)
        print(f"English, {len(paths)} LJSpeech clips, {audio_s:.1f} s, {args.threads} thread(s), CPU int8:")
        measured = {}
        for name, model in models.items():
            seconds, results = timed(model, paths, "en")
            measured[name] = (seconds, word_error_rate([r[1] for r in rows], [x["text"] for x in results], "en"))
            line(f"bundled:{name}", seconds, audio_s, measured[name][1])
        (t_tiny, w_tiny), (t_base, w_base) = measured["tiny.en"], measured["base"]
        print(f"  base / tiny.en: {t_base / t_tiny:.2f}x the time, WER {100 * w_base:.1f}% vs {100 * w_tiny:.1f}%")
    else:
        print(f"English: no LJSpeech fixtures at {FIXTURES / 'ljspeech'} — skipped")

    if args.pt_clips:
        portuguese(models["base"], work, args.pt_clips)
    if args.detect:
        detect(models["base"], work, args.detect_clips, args.intelligible, args.voices)


def portuguese(transcriber, work: Path, clips: int) -> None:
    texts = DEMO_SENTENCES_PT[:clips]
    paths = []
    for i, text in enumerate(texts):
        paths.append(work / f"pt_{i:02d}.wav")
        write_wav(paths[-1], espeak(text, voice=ESPEAK_VOICES["pt"], speed=150) * 0.5, 22050)
    audio_s = sum(sf.info(str(p)).duration for p in paths)
    print(f"\nPortuguese, {len(paths)} espeak-ng clips (voice {ESPEAK_VOICES['pt']}), {audio_s:.1f} s:")
    seconds, results = timed(transcriber, paths, "pt")
    line("bundled:base, language pt", seconds, audio_s, word_error_rate(texts, [r["text"] for r in results], "pt"))
    for ref, r in list(zip(texts, results, strict=True))[:3]:
        print(f"    ref: {ref}\n    hyp: {r['text']}")


def joined_window(paths: list[Path], gap_s: float = 0.3, window_s: float = 30.0) -> np.ndarray:
    """The clips, longest first, end to end with short silences, cut to Whisper's one 30 s window."""
    from xttsflow.asr.backend import WHISPER_SAMPLE_RATE as rate
    from xttsflow.audio import read_audio

    gap = np.zeros(int(gap_s * rate), np.float32)
    audios = sorted((read_audio(p, rate) for p in paths), key=len, reverse=True)
    return np.concatenate([x for a in audios for x in (a, gap)])[:int(window_s * rate)]


#: espeak-ng voice variants for --voices: (variant, words a minute, pitch) - other "speakers" of each language.
VOICE_VARIANTS = (("", 150, 50), ("+m3", 135, 40), ("+f2", 165, 65))


def detect(transcriber, work: Path, clips: int = 3, intelligible: float = 0.30, voices: int = 1) -> None:
    from xttsflow.asr.transcriber import XTTS_WHISPER_CODES
    from xttsflow.languages import detect_source, xtts_language
    from xttsflow.synthesize import DEFAULT_SENTENCES
    from xttsflow.text_metrics import error_counts

    print(f"\nLanguage detection (bundled:base, {clips} espeak-ng segments per source, {voices} source(s) per "
          "language): the stage's vote (most probable over the segments) | one detection on the segments joined "
          "(<= 30 s):")
    right = joined_right = sources = 0
    heard: dict[str, list[bool]] = {}  # language -> each source detected right, for the intelligible languages
    for lang, voice in ESPEAK_VOICES.items():
        for variant, speed, pitch in VOICE_VARIANTS[:voices]:
            paths, texts = [], []
            for i in range(clips):
                texts.append(DEFAULT_SENTENCES[lang][i % len(DEFAULT_SENTENCES[lang])])
                paths.append(work / f"detect_{lang}{variant}_{i}.wav")
                write_wav(paths[-1], espeak(texts[-1], voice=voice + variant, speed=speed, pitch=pitch) * 0.5, 22050)
            counts = [error_counts(t, r["text"], lang) for t, r in zip(texts, timed(transcriber, paths, lang)[1],
                                                                        strict=True)]
            cer = sum(c["char_edits"] for c in counts) / max(1, sum(c["chars"] for c in counts))
            found = detect_source(transcriber, paths)
            ok = found["language"] == lang
            right, sources = right + ok, sources + 1
            joined, probability = transcriber.impl.detect(joined_window(paths), XTTS_WHISPER_CODES) \
                if transcriber.impl.multilingual else ("en", 1.0)
            joined = xtts_language(joined)
            joined_right += joined == lang
            votes = ", ".join(f"{k} {v:.2f}" for k, v in sorted(found["scores"].items(), key=lambda kv: -kv[1])[:3])
            if not variant and cer <= intelligible:  # the plain voice (first) decides if espeak-ng speaks it
                heard[lang] = []
            if lang in heard:
                heard[lang].append(ok)
            name = voice + variant
            print(f"  {lang:6s} (espeak {name:7s}) CER {100 * cer:5.1f}% -> {found['language']:6s} "
                  f"{'ok' if ok else 'WRONG':5s}  {votes:28s} | joined -> {joined:6s} "
                  f"{'ok' if joined == lang else 'WRONG':5s} {probability:.2f}")
    print(f"  correct on {right}/{sources} sources ({100 * right / sources:.0f}%); joined: {joined_right}/{sources} "
          f"({100 * joined_right / sources:.0f}%)")
    good, total = sum(sum(v) for v in heard.values()), sum(len(v) for v in heard.values())
    print(f"  intelligible to base (CER <= {100 * intelligible:.0f}% with the language given, plain voice): "
          f"{', '.join(heard)}; detected right on {good}/{total} of their sources "
          f"({100 * good / max(1, total):.0f}%, target >= 90%); wrong: "
          + (", ".join(f"{k} {len(v) - sum(v)}/{len(v)}" for k, v in heard.items() if not all(v)) or "none"))


if __name__ == "__main__":
    main()
