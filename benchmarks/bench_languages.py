"""Multilingual transcription benchmark: bundled:base beside bundled:tiny.en, and language detection.

    .venv/bin/python benchmarks/bench_languages.py [--threads 2] [--pt-clips 10] [--detect]

1. English: the transcribed LJSpeech clips from ../shared/fixtures, WER and x real time of bundled:tiny.en
   (the baseline) and bundled:base, both through the stage's own Transcriber (beam 5, language forced).
2. Portuguese: espeak-ng's Brazilian voice (pt-br, the demo's) reading the Portuguese demo story
   (xttsflow.demo.DEMO_SENTENCES_PT), bundled:base with language pt; espeak-ng's Portuguese is hard for
   Whisper, so expect a high WER.
3. --detect: `language: auto` as the stage does it (xttsflow.languages.detect_source: several segments per
   source, the most probable language over all of them) on espeak-ng speech of each XTTS language's
   evaluation sentences; prints the detected language per source and the share correct.
Model loads are outside the timings; WER uses xttsflow.text_metrics (the scoring normaliser of that language).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

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
        detect(models["base"], work)


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


def detect(transcriber, work: Path) -> None:
    from xttsflow.languages import detect_source
    from xttsflow.synthesize import DEFAULT_SENTENCES

    print("\nLanguage detection (bundled:base, 3 espeak-ng segments per source, most probable overall):")
    right = 0
    for lang, voice in ESPEAK_VOICES.items():
        paths = []
        for i, text in enumerate(DEFAULT_SENTENCES[lang][:3]):
            paths.append(work / f"detect_{lang}_{i}.wav")
            write_wav(paths[-1], espeak(text, voice=voice, speed=150) * 0.5, 22050)
        found = detect_source(transcriber, paths)
        ok = found["language"] == lang
        right += ok
        votes = ", ".join(f"{k} {v:.2f}" for k, v in sorted(found["scores"].items(), key=lambda kv: -kv[1])[:3])
        print(f"  {lang:6s} (espeak {voice:4s}) -> {found['language']:6s} {'ok' if ok else 'WRONG':5s}  {votes}")
    print(f"  correct on {right}/{len(ESPEAK_VOICES)} sources ({100 * right / len(ESPEAK_VOICES):.0f}%)")


if __name__ == "__main__":
    main()
