"""Segment packing benchmark: speech the exact partition keeps against the greedy merge of commit 9723098.

    .venv/bin/python benchmarks/bench_packing.py [--recordings 40] [--baseline 9723098]

Builds recordings of 81 clips of 1.5-7 s separated by 0.8-1.2 s pauses (the issue's case), as 10 ms frame
powers, and plans them at 5-11.5 s with this checkout's segment.plan and with the baseline commit's (its
package taken with `git archive` into a temporary folder and run in a child process). Prints the clips and
seconds each drops, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MEASURE = """
import json, sys
import numpy as np
from xttsflow.options import SegmentConfig
from xttsflow.segment import plan
dropped = clips = seconds = 0.0
for seed in range(int(sys.argv[1])):
    rng = np.random.default_rng(seed)
    durations, pauses = rng.uniform(1.5, 7.0, 81), rng.uniform(0.8, 1.2, 80)
    frames = [np.full(50, 1e-9)]
    for k, d in enumerate(durations):
        frames += [np.full(round(d * 100), 1e-2), np.full(round((pauses[k] if k < 80 else 0.5) * 100), 1e-9)]
    segs, lost = plan(np.concatenate(frames).astype(np.float32), SegmentConfig.model_construct(max_duration=11.5))
    clips += len(lost)
    dropped += sum(d.end - d.start for d in lost) / 100
    seconds += float(durations.sum())
print(json.dumps({"clips": clips, "dropped_s": round(dropped, 1), "speech_s": round(seconds, 1)}))
"""


def measure(package_root: Path, recordings: int) -> dict:
    env = {"PYTHONPATH": str(package_root), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(recordings)], cwd=package_root, check=True,
                          capture_output=True, text=True, env=env)
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=40)
    parser.add_argument("--baseline", default="9723098")
    args = parser.parse_args()
    ours = measure(REPO, args.recordings)
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "xttsflow"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        base = measure(Path(tmp), args.recordings)
    print(f"{args.recordings} recordings x 81 clips, {ours['speech_s']:.0f} s of speech, segments 5-11.5 s")
    print(f"  baseline {args.baseline} (greedy merge): {base['clips']:.0f} clips dropped, {base['dropped_s']} s")
    print(f"  this checkout (exact partition):  {ours['clips']:.0f} clips dropped, {ours['dropped_s']} s")
    print(f"  speech dropped: {ours['dropped_s'] / max(base['dropped_s'], 1e-9):.2f}x the baseline's")


if __name__ == "__main__":
    main()
