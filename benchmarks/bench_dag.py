"""Planning time of `snakemake -n` for 10, 100 and 1000 sources: the DAG must grow O(sources).

Each size gets a fresh working folder with that many tiny local recordings, one config entry each
(the demo config otherwise), so every job of the workflow is planned. Prints a table with the growth
ratio between sizes (10x more sources should cost at most ~10x, and less while start-up dominates) and
the marginal cost of one more source between sizes, which stays flat when planning is O(sources) and
would grow 10x per row if it were quadratic. Target: <= 10 s at 1000 sources on a 2-core machine.

    .venv/bin/python benchmarks/bench_dag.py [--sizes 10 100 1000] [--until evaluate] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 10.0


def make_workdir(root: Path, n_sources: int, until: str) -> Path:
    """A working folder with `n_sources` distinct tiny WAV files and a config listing each one."""
    workdir = root / f"sources-{n_sources}"
    recordings = workdir / "recordings"
    recordings.mkdir(parents=True)
    tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(2205) / 22050)).astype(np.float32)
    first = recordings / "take-0000.wav"
    sf.write(first, tone, 22050, subtype="PCM_16")
    for i in range(1, n_sources):
        (recordings / f"take-{i:04d}.wav").hardlink_to(first)  # distinct paths, so distinct source ids
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["sources"] = [{"path": f"recordings/take-{i:04d}.wav", "speaker": "bench", "language": "en"}
                         for i in range(n_sources)]
    config["until"] = until
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def plan(workdir: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of one `snakemake -n` (process start included) and the number of jobs planned.

    Planning is single-threaded, so on an idle machine wall ~= CPU; on a busy one the CPU time is the
    steadier number."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--dry-run", "--quiet", "rules"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed in {workdir}:\n{proc.stdout}\n{proc.stderr}")
    total = re.search(r"^total\s+(\d+)$", proc.stdout + proc.stderr, re.MULTILINE)
    return seconds, cpu, int(total[1]) if total else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--until", default="evaluate", help="config `until`: the last stage planned")
    parser.add_argument("--repeats", type=int, default=2, help="runs per size; the best one counts")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="bench-dag-"))
    try:
        rows = []
        for n in args.sizes:
            workdir = make_workdir(root, n, args.until)
            runs = [plan(workdir) for _ in range(args.repeats)]
            rows.append((n, runs[0][2], min(r[0] for r in runs), min(r[1] for r in runs)))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"snakemake -n planning time (until: {args.until}; best of {args.repeats}; process start included)")
    print(f"load average at the start: {load:.1f} on {os.cpu_count()} cores (wall times grow with it, CPU times not)")
    print(f"{'sources':>8} {'jobs':>7} {'wall s':>7} {'cpu s':>6} {'x sources':>10} {'x wall':>7} {'x cpu':>6} "
          f"{'cpu ms/added source':>20}")
    previous = None
    for n, jobs, seconds, cpu in rows:
        growth = ("", "", "", "")
        if previous is not None:
            marginal = 1000 * (cpu - previous[3]) / (n - previous[0])
            growth = (f"{n / previous[0]:.0f}x", f"{seconds / previous[2]:.2f}x", f"{cpu / previous[3]:.2f}x",
                      f"{marginal:.1f}")
        print(f"{n:>8} {jobs:>7} {seconds:>7.2f} {cpu:>6.2f} {growth[0]:>10} {growth[1]:>7} {growth[2]:>6} "
              f"{growth[3]:>20}")
        previous = (n, jobs, seconds, cpu)
    largest = rows[-1]
    if largest[2] <= TARGET_S:
        verdict = "OK"
    elif largest[3] <= TARGET_S:
        verdict = "over on wall time only: the CPU time is within it, the machine is busy"
    else:
        verdict = "OVER TARGET"
    print(f"target: <= {TARGET_S:.0f} s at {largest[0]} sources -> {largest[2]:.2f} s wall, {largest[3]:.2f} s CPU "
          f"({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
