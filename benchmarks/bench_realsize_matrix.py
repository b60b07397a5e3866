"""Real-size training matrix on CPU: peak RSS and step time of LoRA and full fine-tuning, batch 1 and 2, with and
without gradient checkpointing — each configuration in its own process, so peaks do not mix — plus the
save + export time and the size of every checkpoint file.

    .venv/bin/python benchmarks/bench_realsize_matrix.py --work /tmp/realsize-matrix   # ~40 min on 2 cores, <=16 GB
    .venv/bin/python benchmarks/bench_realsize_matrix.py --only "LoRA r8 batch 2 plain" --amp auto bf16
                                                  # float32 and CPU bf16 autocast side by side, one configuration

Each run is `python -m xttsflow.train` on builtin:xtts-v2-size (XTTS-v2's dimensions, random weights), 2 steps
of 6 s clips, under `/usr/bin/time -v` (peak RSS = its "Maximum resident set size"). Step time is the
second step's (the time between the two step lines; the first warms the allocator); save + export is from
the last step's line to the export's (the final checkpoint, the adapter, the merge and the 1.8 GB write).
Ratios are printed against LoRA, batch 1, no checkpointing.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "


def seconds_at(line: str) -> float:
    return datetime.strptime(re.match(STAMP, line)[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run_one(base: Path, dataset: Path, out: Path, lora: bool, batch: int, checkpointing: bool, threads: int,
            amp_dtype: str = "auto"):
    sets = {"use_lora": lora, "batch_size": batch, "gradient_checkpointing": checkpointing, "max_steps": 2,
            "amp_dtype": amp_dtype,
            "num_workers": 0, "log_every_n_steps": 1, "save_every_n_steps": 100, "use_tensorboard": False,
            "eval_audio": False, "language": "en", "device": "cpu", "keep_checkpoints": 1}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]
    out.mkdir(parents=True)
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "xttsflow.train", "--base", str(base), "--dataset",
               str(dataset), "--threads", str(threads), "--no-progress", *args]
    proc = subprocess.run(command, cwd=out, capture_output=True, text=True)
    log = proc.stderr
    if proc.returncode:
        return {"error": log[-2000:]}
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", log)[1])
    lines = log.splitlines()
    steps = [ln for ln in lines if re.match(STAMP + r".*step \d+/2 loss", ln)]
    exported = next(ln for ln in lines if "exported the fine-tuned model" in ln)
    run_dir = out / "checkpoints" / "main"
    sizes = {p.relative_to(run_dir).as_posix(): p.stat().st_size for p in run_dir.rglob("*")
             if p.is_file() and (p.suffix in (".pt", ".pth", ".safetensors"))}
    return {"rss_gb": rss_kb / 1e6, "step_s": seconds_at(steps[-1]) - seconds_at(steps[0]),
            "export_s": seconds_at(exported) - seconds_at(steps[-1]), "sizes": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/xttsflow-realsize-matrix"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0, help="clip length")
    parser.add_argument("--only", nargs="+", help='only these configurations, e.g. "LoRA r8 batch 2 plain"')
    parser.add_argument("--amp", nargs="+", default=["auto"], choices=["auto", "bf16"],
                        help="amp_dtype of each run (auto: float32 on CPU; bf16: CPU autocast, native bf16 only)")
    args = parser.parse_args()
    from bench_realsize import make_dataset

    from xttsflow.base_model import prepare_base_model
    from xttsflow.settings import BUILTIN_XTTS_V2_SIZE

    args.work.mkdir(parents=True, exist_ok=True)
    base = args.work / "base"
    if not (base / "model.pth").is_file():
        prepare_base_model(BUILTIN_XTTS_V2_SIZE, base)
    dataset = args.work / "dataset"
    if not dataset.is_dir():
        make_dataset(dataset, [args.seconds] * 4)
    results = {}
    for lora, batch, ckpt, amp in itertools.product((True, False), (1, 2), (False, True), args.amp):
        config = f"{'LoRA r8' if lora else 'full FT'} batch {batch} {'checkpointed' if ckpt else 'plain'}"
        if args.only and config not in args.only:
            continue
        name = config + (" bf16" if amp == "bf16" else "")
        out = args.work / re.sub(r"\W+", "-", name)
        shutil.rmtree(out, ignore_errors=True)
        results[name] = found = run_one(base, dataset, out, lora, batch, ckpt, args.threads, amp)
        print(f"{name}: {found if 'error' in found else {k: v for k, v in found.items() if k != 'sizes'}}",
              flush=True)
        shutil.rmtree(out, ignore_errors=True)  # up to 12 GB each (full fine-tuning checkpoints are 5.3 GB)
    first_name = next(iter(results))
    first = results[first_name]
    print(f"\nXTTS-v2 size on CPU, {args.threads} threads, {args.seconds:g} s clips (ratio vs {first_name})")
    print(f"{'configuration':32} {'peak RSS GB':>12} {'ratio':>6} {'step s':>8} {'ratio':>6} {'save+export s':>14}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:32} failed: {r['error'].splitlines()[-1]}")
            continue
        print(f"{name:32} {r['rss_gb']:12.1f} {r['rss_gb'] / first['rss_gb']:6.2f} {r['step_s']:8.1f} "
              f"{r['step_s'] / first['step_s']:6.2f} {r['export_s']:14.1f}")
    print("\ncheckpoint files (MB):")
    for name, r in results.items():
        if "sizes" in r and ("batch 1 plain" in name or args.only):
            print(f"  {name}: " + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in sorted(r["sizes"].items())))


if __name__ == "__main__":
    main()
