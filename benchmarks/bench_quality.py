"""Quality screen cost: DNSMOS P.835 + SNR (xttsflow.quality) against the transcribe stage, on the same clips.

    .venv/bin/python benchmarks/bench_quality.py [--clips 12] [--threads 1] [--repeat 2] [--models M ...]

On LJSpeech clips from ../shared/fixtures (else espeak-ng sentences) in the segment stage's layout, times
the transcribe stage (transcribe_source with each of --models: the bundled tiny.en, the demo's model, and
the bundled multilingual base, demo-pt's; the schema's default, medium, cannot be downloaded here) and the
quality job (score_source) with the same thread count; model loads are inside both, as in a job. Prints
each, in x real time, and the ratio quality / transcribe per model (the issue's target: at most 0.30 on
CPU). The best of --repeat runs counts, interleaved.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_transcribe import make_clips  # noqa: E402

from xttsflow.quality import score_source  # noqa: E402
from xttsflow.transcribe import TranscribeConfig, transcribe_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["bundled:tiny.en", "bundled:base"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest, _ = make_clips(work, args.clips)
        seg_dir = manifest.with_suffix("")
        wall = {**{model: float("inf") for model in args.models}, "quality": float("inf")}
        cpu = dict(wall)
        audio_s = 0.0

        def timed(name, fn):
            t0, c0 = time.perf_counter(), time.process_time()
            result = fn()
            wall[name] = min(wall[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
            return result

        for k in range(args.repeat):
            for i, model in enumerate(args.models):  # each its own transcript: a journal would resume another's
                cfg = TranscribeConfig(model=model, workers=1)
                stats = timed(model, lambda out=work / f"t{k}-{i}.json", cfg=cfg: transcribe_source(
                    manifest, seg_dir, out, cfg, language="en", threads=args.threads))
                audio_s = stats["audio_seconds"]
            timed("quality", lambda k=k: score_source(manifest, seg_dir, work / f"q{k}.json", threads=args.threads))
    print(f"{args.clips} clips, {audio_s:.1f} s of audio, {args.threads} thread(s), CPU")
    for name in wall:
        print(f"  {name:16s} wall {wall[name]:7.2f} s ({audio_s / wall[name]:5.1f}x real time), "
              f"CPU {cpu[name]:7.2f} s")
    for model in args.models:
        print(f"  quality / transcribe ({model}): wall {wall['quality'] / wall[model]:.2f}, "
              f"CPU {cpu['quality'] / cpu[model]:.2f}  (target <= 0.30; on a shared machine CPU is the steadier)")


if __name__ == "__main__":
    main()
