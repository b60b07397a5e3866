"""Segment stage benchmark: our silence detection against pydub's split_on_silence, and the whole stage.

    .venv/bin/python benchmarks/bench_segment.py [--minutes 10] [--long-minutes 120]

Builds a recording of espeak-ng speech (and the LJSpeech clips in ../shared/fixtures when present) with
known pauses, pins the process (and FFmpeg, its child) to one CPU core, then prints:
  1. silence detection on the decoded samples - ours (numpy 10 ms frames) vs pydub.silence.split_on_silence
     with the same parameters (500 ms, -40 dBFS) - both times and the ratio;
  2. the whole segment stage on the FLAC file (decode twice, plan, normalise, write WAVs + manifest) in x real time;
  3. with --long-minutes, the peak memory of the stage on a recording that long (run as a separate process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xttsflow.demo import DEMO_SENTENCES, espeak  # noqa: E402
from xttsflow.segment import (  # noqa: E402
    SegmentConfig,
    detect_pauses,
    find_speech,
    frame_power,
    segment_file,
)

SR = 22050
FIXTURES = Path(os.environ.get("XTTSFLOW_FIXTURES", REPO.parent / "shared" / "fixtures"))


def utterances() -> list[np.ndarray]:
    """espeak-ng sentences in two voices and speeds, plus the LJSpeech clips when present."""
    clips = [espeak(t, voice=v, speed=s) * 0.5 for t in DEMO_SENTENCES for v, s in (("en-us", 160), ("en", 185))]
    for wav in sorted((FIXTURES / "ljspeech").glob("*/*.wav")):
        data, rate = sf.read(wav, dtype="float32")
        if rate == SR:
            voiced = np.flatnonzero(np.abs(data) > 0.01)
            clips.append(data[voiced[0]: voiced[-1] + 1])
    return clips


def build_recording(seconds: float, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Utterances in random order with pauses of 0.2 to 1.5 s over a -70 dBFS noise floor, and the pauses."""
    rng = np.random.default_rng(seed)
    clips = utterances()
    parts, pauses, t = [], [], 0.0
    while t < seconds:
        clip = clips[rng.integers(len(clips))]
        parts.append(clip)
        t += len(clip) / SR
        gap = float(rng.choice([0.2, 0.35, 0.6, 0.8, 1.0, 1.5]))
        parts.append(np.zeros(int(gap * SR), np.float32))
        pauses.append((t, t + gap))
        t += int(gap * SR) / SR
    samples = np.concatenate(parts)[: int(seconds * SR)]
    samples = samples + (rng.standard_normal(samples.size) * 10 ** (-70 / 20)).astype(np.float32)
    return samples.astype(np.float32), [p for p in pauses if p[1] < seconds]


def ours(samples: np.ndarray, cfg: SegmentConfig) -> list:
    """The project's silence detection: frame powers -> pauses -> speech chunks."""
    return find_speech(frame_power(samples, SR), cfg)


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--long-minutes", type=float, default=0, help="also measure peak memory at this length")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args()
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # FFmpeg children inherit it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    from pydub import AudioSegment
    from pydub.silence import detect_silence, split_on_silence

    cfg = SegmentConfig()
    seconds = args.minutes * 60
    samples, pauses = build_recording(seconds)
    print(f"recording: {seconds / 60:.1f} min at {SR} Hz, {len(pauses)} inserted pauses, {cores} core(s)")

    pcm = np.clip(np.rint(samples * 32767), -32768, 32767).astype("<i2")
    audio = AudioSegment(pcm.tobytes(), frame_rate=SR, sample_width=2, channels=1)
    t_pydub, chunks = best_of(lambda: split_on_silence(audio, min_silence_len=cfg.min_silence_ms,
                                                         silence_thresh=cfg.silence_thresh_dbfs,
                                                         keep_silence=cfg.keep_silence_ms), 1)
    t_ours, spans = best_of(lambda: ours(samples, cfg), 5)
    print("\n1. silence detection (500 ms, -40 dBFS) on the decoded samples")
    print(f"   pydub split_on_silence : {t_pydub:8.3f} s  ({seconds / t_pydub:8.0f}x real time, {len(chunks)} chunks)")
    print(f"   xttsflow (numpy frames): {t_ours:8.3f} s  ({seconds / t_ours:8.0f}x real time, {len(spans)} chunks)")
    print(f"   ratio                  : {t_pydub / t_ours:8.0f}x faster")

    # Both should find the same pauses; count the inserted ones (>= 600 ms) each finds within 50 ms.
    truth = [p for p in pauses if p[1] - p[0] >= 0.6]
    mine = detect_pauses(frame_power(samples, SR), cfg) / 100
    theirs = np.array(detect_silence(audio, cfg.min_silence_ms, cfg.silence_thresh_dbfs), float) / 1000

    def found(detected):
        return sum(any(abs(d[0] - s) <= 0.05 and abs(d[1] - e) <= 0.05 for d in detected) for s, e in truth)

    print(f"   inserted pauses >= 600 ms found within 50 ms: xttsflow {found(mine)}/{len(truth)}, "
          f"pydub {found(theirs)}/{len(truth)}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        flac = tmp / "bench.flac"
        sf.write(flac, samples, SR, subtype="PCM_16")
        t_stage, result = best_of(lambda: segment_file(flac, tmp / "segs", tmp / "segs.json", cfg), 3)
        print("\n2. whole segment stage on the FLAC file (decode, plan, normalise, write)")
        print(f"   {t_stage:.3f} s for {seconds:.0f} s of audio: {seconds / t_stage:.0f}x real time, "
              f"{len(result['segments'])} segments, {len(result['dropped'])} dropped")

        if args.long_minutes:
            reps = int(np.ceil(args.long_minutes * 60 / seconds))
            long_flac = tmp / "long.flac"
            with sf.SoundFile(long_flac, "w", SR, 1, subtype="PCM_16") as f:
                for _ in range(reps):
                    f.write(samples)
            # VmHWM of the child itself: ru_maxrss of children would count pages forked from this process.
            code = ("import sys, xttsflow.segment as s; s.main(sys.argv[1:]); "
                    "print([ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0])")
            t0 = time.perf_counter()
            cmd = [sys.executable, "-c", code, str(long_flac), str(tmp / "long"), str(tmp / "long.json")]
            proc = subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, text=True)
            took = time.perf_counter() - t0
            peak_mb = int(proc.stdout.split("VmHWM:")[1].split()[0]) / 1024
            decoded_mb = reps * samples.size * 4 / 2**20
            print(f"\n3. {reps * seconds / 60:.0f} min recording as a separate process: {took:.1f} s "
                  f"({reps * seconds / took:.0f}x real time incl. start-up), peak RSS {peak_mb:.0f} MB "
                  f"(the decoded signal alone would be {decoded_mb:.0f} MB)")


if __name__ == "__main__":
    main()
