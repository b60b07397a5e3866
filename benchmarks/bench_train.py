"""Train-stage benchmark (CPU): LoRA vs full GPT fine-tuning, and our loop vs coqui's GPTTrainer + Trainer.

    .venv/bin/python benchmarks/bench_train.py            # mid-size GPT (8 layers, 512 channels)
    .venv/bin/python benchmarks/bench_train.py --quick    # the tiny GPT, a smoke run
    .venv/bin/python benchmarks/bench_train.py --long --batch 3 --kinds coqui full fast   # the recipe's batch
                                                          # on a typical dataset: clips of 5-11 s
    .venv/bin/python benchmarks/bench_train.py --long --batch 3 --kinds coqui coqui_bf16 fast bf16
                                                          # with CPU bf16 autocast, beside coqui's (native bf16 CPUs)

Every measurement runs in its own subprocess (a clean peak-memory reading) on the same random XTTS
checkpoint, the same espeak clips, batch size and thread count. Step time is the median time between
consecutive optimizer steps after a warm-up, data loading included, in wall time and in the process's CPU
time (one thread: the CPU time is what the step computes, and other jobs on the machine barely change it,
so the ratios are taken from it; wall time is printed beside it). Memory is the process's resident
set, sampled every 2 ms while training: its peak, and its growth over the loaded model (the weights
are the same in every run; gradients, optimizer state and activations make the difference). Targets
(issue 4): LoRA peak memory <= 60% of full fine-tuning; our loop's step time <= 110% of coqui's;
(issue 15) clips/s of our loop with length-grouped batches (batch_group_size 48, full GPT as coqui's
recipe), the fused AdamW (fused_optimizer) and, in "bf16", CPU bf16 autocast (amp_dtype bf16, on a CPU with
native bfloat16) >= 1.3x coqui's GPTTrainer + Trainer.fit() with the recipe's settings (float32) at the
same batch size, printed as ratios beside each other, with the loss of each step of both loops; "coqui_bf16"
is coqui's Trainer with mixed_precision on (its CPU autocast is bf16), the like-for-like pair of "bf16".
"ours, full GPT" and "ours, LoRA" run the plain per-tensor AdamW (coqui's), so their ratios measure the loop
alone.
Also printed: the trainable fraction of LoRA on the real XTTS-v2 dimensions, built on the meta device.

The default clips are 8 espeak sentences of ~4.5 s, all alike in length, so grouping them by length cuts
almost no padding. --long makes 16 clips spread evenly over 5-11 s instead (one or two sentences, the
speaking rate chosen per clip), the issue's "typical dataset of 5-11 s clips"; coqui's XTTS dataset draws
every training clip at random, so its batches pad as random batches do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KINDS = {"lora": "ours, LoRA r=8", "full": "ours, full GPT", "coqui": "coqui GPTTrainer+Trainer, full",
         "grouped": "ours, full, grouped 48", "fast": "ours, full, grouped 48 + fused",
         "bf16": "ours, grouped + fused + bf16", "coqui_bf16": "coqui Trainer, full, bf16"}
#: run_ours's options per kind of ours
OURS = {"lora": {"lora": True}, "full": {}, "grouped": {"group": 48}, "fast": {"group": 48, "fused": True},
        "bf16": {"group": 48, "fused": True, "amp_dtype": "bf16"}}
# (ours, coqui's, label): against the recipe's settings (float32), and bf16 against coqui's own bf16
OURS_VS_COQUI = (("full", "coqui", "ours plain"), ("grouped", "coqui", "ours grouped"),
                 ("fast", "coqui", "ours grouped+fused"), ("bf16", "coqui", "ours grouped+fused+bf16"),
                 ("bf16", "coqui_bf16", "ours grouped+fused+bf16"))
MID = {"gpt_layers": 8, "gpt_n_model_channels": 512, "gpt_n_heads": 8}
TINY = {"gpt_layers": 2, "gpt_n_model_channels": 64, "gpt_n_heads": 4}
XTTS_V2 = {"layers": 30, "model_dim": 1024, "heads": 16, "number_text_tokens": 6681, "num_audio_tokens": 1026}


class RssPeak:
    """Peak resident memory of this process while the `with` block runs (sampled from /proc)."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.now()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def long_recordings(count: int = 16) -> list[tuple[str, np.ndarray]]:
    """`count` espeak clips whose durations lie evenly over 5-11 s: one or two sentences, each clip at the
    speaking rate (120-240 words a minute) that brings it nearest its share of the range."""
    from xttsflow.demo import DEMO_SENTENCES, espeak

    chosen = []
    for k, want in enumerate(np.linspace(5.0, 11.0, count)):
        text = " ".join(DEMO_SENTENCES[k % 28: k % 28 + (1 if want < 6.5 else 2)])
        takes = [espeak(text, speed=speed) for speed in range(120, 241, 15)]
        chosen.append((text, min(takes, key=lambda wav: abs(wav.size / 22050 - want))))
    return chosen


def make_inputs(work: Path, gpt: dict, clips: int, long: bool = False) -> tuple[Path, Path]:
    """A random XTTS checkpoint of the given GPT size and an LJSpeech dataset of `clips` espeak clips
    (8 sentences, or with `long` the 16 of long_recordings, repeated)."""
    from xttsflow.atomic import write_json
    from xttsflow.audio import write_wav
    from xttsflow.demo import DEMO_SENTENCES, espeak
    from xttsflow.xtts_model import build_random_checkpoint

    base = build_random_checkpoint(work / "base", seed=0, **gpt)
    data = work / "dataset"
    (data / "wavs").mkdir(parents=True)
    rows = []
    recordings = long_recordings() if long else [(text, None) for text in DEMO_SENTENCES[:8]]
    for i in range(clips):
        text, audio = recordings[i % len(recordings)]
        wav = data / "wavs" / f"c{i:03d}.wav"
        if i < len(recordings):
            write_wav(wav, espeak(text) if audio is None else audio, 22050)
        else:  # the same recordings again: enough clips that no epoch ends inside the measured steps
            os.link(data / "wavs" / f"c{i % len(recordings):03d}.wav", wav)
        rows.append(f"c{i:03d}|{text}|{text}")
    (data / "metadata_train.csv").write_text("\n".join(rows) + "\n")
    (data / "metadata_val.csv").write_text(rows[0] + "\n")
    write_json(data / "stats.json", {"datasets": [{"formatter": "ljspeech", "path": ".", "language": "en",
                                                   "meta_file_train": "metadata_train.csv",
                                                   "meta_file_val": "metadata_val.csv"}]})
    return base, data


class _Measured(Exception):
    """Raised after the last measured step, so validation and export stay out of the timings."""


def run_ours(base: str, data: str, out: str, steps: int, batch: int, lora: bool = False, group: int = 0,
             fused: bool = False, amp_dtype: str = "auto") -> dict:
    from xttsflow.settings import load_settings
    from xttsflow.train import Trainer

    s = load_settings(None, env_file=None, use_lora=lora, max_steps=steps, batch_size=batch, num_workers=0,
                      batch_group_size=group, fused_optimizer=fused, amp_dtype=amp_dtype,
                      learning_rate=1e-4, lr_scheduler="constant", eval_audio=False, use_tensorboard=False,
                      save_every_n_steps=10**6, log_every_n_steps=1, resume=False)
    trainer = Trainer(s, base, dataset_dir=data, run_dir=Path(out) / s.run_name)
    stamps: list[float] = []
    cpu: list[float] = []
    step = trainer.optimizer_step

    def timed_step() -> float:
        norm = step()
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())
        if len(stamps) == steps:
            raise _Measured
        return norm

    trainer.optimizer_step = timed_step
    audio = batch_audio_recorder()
    with RssPeak() as rss, contextlib.suppress(_Measured):
        trainer.run(progress=False)
    losses = [e["loss"] for e in trainer.history if "loss" in e]  # one entry a step (log_every_n_steps 1)
    # batch k ends at stamp k, so the interval between stamps k-1 and k computed batch k
    return {"stamps": stamps, "cpu": cpu, "peak": rss.peak, "start": rss.start, "audio": audio[:len(stamps)],
            "trainable": trainer.counts["trainable"], "tensors": training_tensors(trainer), "losses": losses}


def batch_audio_recorder() -> list[int]:
    """The samples of audio (unpadded) of every training batch our loop computes, in order."""
    import torch

    from xttsflow import train

    audio: list[int] = []
    plain = train.forward

    def counted(model, batch, *args, **kwargs):
        if torch.is_grad_enabled():  # not validation
            audio.append(int(batch["wav_lengths"].sum()))
        return plain(model, batch, *args, **kwargs)

    train.forward = counted
    return audio


def training_tensors(trainer) -> dict:
    """Bytes of what training holds: weights, gradients, optimizer state, and activations saved for backward."""
    import torch

    from xttsflow import train_data
    from xttsflow.train import forward

    def nbytes(tensors) -> int:
        unique = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(unique.values())

    model = trainer.model
    saved: list = []
    batch = next(iter(train_data.loader(trainer.train_set, trainer.settings.batch_size, 0, 0, 0)))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        forward(model, batch, trainer.device, None)
    state = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    weights = [*model.parameters(), *model.buffers()]
    held = {t.untyped_storage().data_ptr() for t in weights}  # a weight saved for backward is no extra memory
    return {"weights": nbytes(weights), "grads": nbytes(trainer.params), "optimizer": nbytes(state),
            "activations": nbytes([t for t in saved if t.untyped_storage().data_ptr() not in held])}


def run_coqui(base: str, data: str, out: str, steps: int, batch: int, bf16: bool = False) -> dict:
    """coqui's own recipe path: GPTTrainer (the same model and weights) driven by coqui's Trainer.fit().

    The recipe trains in float32 (its config leaves `mixed_precision` off); with `bf16` coqui's Trainer runs
    its CPU autocast, which is bfloat16."""
    from trainer import Trainer, TrainerArgs

    from xttsflow import train_data
    from xttsflow.gpt_model import build_gpt_trainer

    model = build_gpt_trainer(base, batch)
    config = model.config
    config.update({"epochs": 1, "batch_size": batch, "eval_batch_size": batch, "num_loader_workers": 0,
                   "num_eval_loader_workers": 0, "run_eval": False, "test_delay_epochs": 10**6, "print_step": 10**6,
                   "plot_step": 10**6, "save_step": 10**9, "save_checkpoints": False, "save_best_after": 10**9,
                   "mixed_precision": bf16, "grad_clip": 1.0, "lr": 1e-4, "optimizer": "AdamW",
                   "lr_scheduler": "MultiStepLR", "lr_scheduler_params": {"milestones": [10**9], "gamma": 0.5},
                   "dashboard_logger": "tensorboard", "output_path": out, "print_eval": False,
                   "save_on_interrupt": False})
    samples = train_data.read_split(data, "train")[: steps * batch]
    stamps: list[float] = []
    cpu: list[float] = []
    losses: list[float] = []
    model.on_train_step_start = lambda trainer: (stamps.append(time.perf_counter()), cpu.append(time.process_time()))
    train_step = model.train_step

    audio: list[int] = []

    def recorded_step(batch, *args, **kwargs):
        audio.append(int(batch["wav_lengths"].sum()))
        outputs, loss_dict = train_step(batch, *args, **kwargs)
        losses.append(float(loss_dict["loss"]))
        return outputs, loss_dict

    model.train_step = recorded_step
    trainer = Trainer(TrainerArgs(), config, output_path=out, model=model, train_samples=samples,
                      eval_samples=samples[:1], parse_command_line_args=False)
    with RssPeak() as rss:
        trainer.fit()
    # step k starts at stamp k, so the interval between stamps k and k+1 computed batch k: shift by one
    return {"stamps": stamps, "cpu": cpu, "peak": rss.peak, "start": rss.start, "audio": [0, *audio][:len(stamps)],
            "trainable": sum(p.numel() for p in model.xtts.gpt.parameters()), "losses": losses}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker.startswith("coqui"):
        result = run_coqui(args.base, args.data, args.out, args.steps, args.batch, bf16=args.worker == "coqui_bf16")
    else:
        result = run_ours(args.base, args.data, args.out, args.steps, args.batch, **OURS[args.worker])
    print("RESULT " + json.dumps(result))


def measure(kind: str, base: Path, data: Path, work: Path, steps: int, batch: int, threads: int) -> dict:
    out = tempfile.mkdtemp(dir=work, prefix=f"{kind}-")
    cmd = [sys.executable, __file__, "--worker", kind, "--base", str(base), "--data", str(data), "--out", out,
           "--steps", str(steps), "--batch", str(batch), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{kind} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(line[7:])
    def median_step(stamps: list[float]) -> float:
        warm = max(2, len(stamps) // 4)
        return statistics.median(b - a for a, b in zip(stamps[warm:], stamps[warm + 1:], strict=False))

    def cpu_per_audio_s(cpu: list[float], audio: list[int]) -> float:
        """CPU seconds per second of (unpadded) training audio over the measured steps: audio[k] is what the
        interval ending at stamp k computed."""
        warm = max(2, len(cpu) // 4)
        return (cpu[-1] - cpu[warm]) / (sum(audio[warm + 1:]) / 22050)

    tensors = {k: v / 2**20 for k, v in result.get("tensors", {}).items()}
    return {"step_s": median_step(result["stamps"]), "cpu_s": median_step(result["cpu"]),
            "cpu_per_audio_s": cpu_per_audio_s(result["cpu"], result["audio"]),
            "peak_mb": result["peak"] / 2**20,
            "growth_mb": (result["peak"] - result["start"]) / 2**20, "trainable": result["trainable"],
            "steps": len(result["stamps"]), "tensors": tensors, "losses": result["losses"]}


def real_xtts_fraction() -> tuple[list[tuple[str, int, int]], int]:
    """Trainable parameters of LoRA on XTTS-v2's real GPT sizes, and the parameters of everything else that
    training holds (HiFi-GAN decoder, DVAE); built on the meta device: no memory, no weights."""
    import torch
    from peft import get_peft_model
    from TTS.tts.layers.xtts.gpt import GPT
    from TTS.tts.layers.xtts.hifigan_decoder import HifiDecoder

    from xttsflow.gpt_model import lora_config
    from xttsflow.settings import LORA_TARGETS
    from xttsflow.xtts_model import build_dvae, skip_weight_init

    with skip_weight_init():  # (torchaudio's mel filters cannot be built on the meta device)
        rest = sum(p.numel() for m in (HifiDecoder(), build_dvae()) for p in m.parameters())
    rows = []
    for rank, targets in [(8, LORA_TARGETS), (16, LORA_TARGETS), (8, ("attn.c_attn", "attn.c_proj"))]:
        with torch.device("meta"):
            gpt = GPT(layers=XTTS_V2["layers"], model_dim=XTTS_V2["model_dim"], heads=XTTS_V2["heads"],
                      number_text_tokens=XTTS_V2["number_text_tokens"], num_audio_tokens=XTTS_V2["num_audio_tokens"],
                      start_audio_token=1024, stop_audio_token=1025, max_text_tokens=402, max_mel_tokens=605,
                      max_prompt_tokens=70, use_perceiver_resampler=True)
            total = sum(p.numel() for p in gpt.parameters())
            get_peft_model(gpt, lora_config(rank, 2 * rank, 0.0, list(targets)))
        trainable = sum(p.numel() for p in gpt.parameters() if p.requires_grad)
        rows.append((f"LoRA r={rank} on {', '.join(targets)}", trainable, total))
    return rows, rest


def print_memory(best: dict) -> None:
    print("\ntraining tensors (MB): weights + gradients + optimizer state + activations saved for backward")
    totals = {}
    for kind in ("lora", "full"):
        t = best[kind]["tensors"]
        totals[kind] = sum(t.values())
        print(f"{KINDS[kind]:32s} weights {t['weights']:7.0f}  grads {t['grads']:7.0f}  optimizer "
              f"{t['optimizer']:7.0f}  activations {t['activations']:7.0f}  = {totals[kind]:7.0f}")
    print()
    print(f"LoRA / full training memory (tensors):    {totals['lora'] / totals['full']:6.2f}  (target <= 0.60)")
    print(f"LoRA / full peak RSS (whole process):     {best['lora']['peak_mb'] / best['full']['peak_mb']:6.2f}")
    print(f"LoRA / full step time:                    {best['lora']['cpu_s'] / best['full']['cpu_s']:6.2f}")


def print_speed(results: dict, best: dict) -> None:
    if {"full", "coqui"} <= best.keys():
        overhead = best["full"]["cpu_s"] / best["coqui"]["cpu_s"]
        print(f"our loop / coqui Trainer step time:       {overhead:6.2f}  (target <= 1.10)")
    pairs = [(o, c, label) for o, c, label in OURS_VS_COQUI if {o, c} <= best.keys()]
    # same batch size: the step-time ratio is the clips/s ratio; each round's runs ran back to back
    print("clips/s ratios: CPU time of the best rounds (per round: CPU | wall)")
    for kind, theirs, label in pairs:
        rounds = [f"{c['cpu_s'] / o['cpu_s']:.2f} | {c['step_s'] / o['step_s']:.2f}"
                  for c, o in zip(results[theirs], results[kind], strict=True)]
        print(f"clips/s {label + ' / ' + KINDS[theirs] + ':':58s} {best[theirs]['cpu_s'] / best[kind]['cpu_s']:6.2f}"
              f"  (per round {', '.join(rounds)})")
    print("target: ours (grouped, and whatever else) / coqui's recipe settings >= 1.30")
    # Clips of different lengths: which clips each loop happened to draw in a few steps moves the step time
    # more than the loops differ, so the same ratio per second of audio computed (equal to the clips/s ratio
    # on one clip-length distribution) is printed too, from each kind's best round by that measure.
    fastest = {k: min(r["cpu_per_audio_s"] for r in v) for k, v in results.items()}
    print("CPU s per second of training audio (unpadded), best round: "
          + ", ".join(f"{KINDS[k]} {v:.3f}" for k, v in fastest.items()))
    for kind, theirs, label in pairs:
        rounds = ", ".join(f"{c['cpu_per_audio_s'] / o['cpu_per_audio_s']:.2f}"
                           for c, o in zip(results[theirs], results[kind], strict=True))
        print(f"audio s/CPU s {label + ' / ' + KINDS[theirs] + ':':52s} {fastest[theirs] / fastest[kind]:6.2f}"
              f"  (per round {rounds})")


def plot_losses(curves: dict[str, list[float]], path: Path) -> None:
    """The loss of every step of each loop, side by side (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    for kind, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3, label=KINDS[kind])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (text CE x 0.01 + mel CE)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    print(f"loss curves: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny GPT, few steps")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="1: least disturbed by other jobs")
    parser.add_argument("--rounds", type=int, default=3, help="alternate the runs this many times")
    parser.add_argument("--plot", help="write the loss curves of the loops side by side to this PNG")
    parser.add_argument("--long", action="store_true", help="16 clips spread over 5-11 s (default: 8 of ~4.5 s)")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS),
                        help="only these runs (default: all)")
    parser.add_argument("--worker", choices=list(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    gpt = TINY if args.quick else MID
    steps = 6 if args.quick else args.steps
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        base, data = make_inputs(work, gpt, clips=(steps + 1) * args.batch, long=args.long)
        print(f"GPT {gpt}, batch {args.batch}, {steps} steps per run, {args.threads} threads, CPU, "
              f"{'16 clips of 5-11 s' if args.long else '8 clips of ~4.5 s'}\n")
        results: dict[str, list[dict]] = {kind: [] for kind in args.kinds}
        for _ in range(args.rounds):  # alternate, so a busy machine slows all of them alike
            for kind in results:
                results[kind].append(measure(kind, base, data, work, steps, args.batch, args.threads))
    best = {k: min(v, key=lambda r: r["cpu_s"]) for k, v in results.items()}
    names = KINDS
    print("step time: median of the round with the least CPU time; RSS: whole process, growth = peak - after loading")
    print(f"{'run':32s} {'CPU s':>7s} {'wall s':>7s} {'RSS peak MB':>12s} {'RSS growth MB':>14s} {'trainable':>12s}")
    for kind, r in best.items():
        print(f"{names[kind]:32s} {r['cpu_s']:7.3f} {r['step_s']:7.3f} {r['peak_mb']:12.0f} {r['growth_mb']:14.0f} "
              f"{r['trainable']:12,d}")
    if {"lora", "full"} <= best.keys():
        print_memory(best)
    if {"coqui", "coqui_bf16"} & best.keys():
        print_speed(results, best)
    curves = {kind: best[kind]["losses"] for kind in ("full", "fast", "bf16", "coqui", "coqui_bf16") if kind in best}
    print("\nloss per step (the fastest round of each; the loops draw their batches in their own orders)")
    print(f"{'step':>4s} " + " ".join(f"{names[k]:>30s}" for k in curves))
    for i in range(max(len(c) for c in curves.values())):
        print(f"{i + 1:4d} " + " ".join(f"{c[i]:30.4f}" if i < len(c) else " " * 30 for c in curves.values()))
    if args.plot:
        plot_losses(curves, Path(args.plot))
    rows, rest = real_xtts_fraction()
    print("\nXTTS-v2 real dimensions (30 layers, 1024 channels; built on the meta device):")
    for name, trainable, total in rows:
        print(f"  {name:55s} {trainable:>12,d} of {total:,d} GPT parameters = {100 * trainable / total:.2f}%")
    name, lora, gpt = rows[0]
    full_state = 4 * (gpt + rest + 3 * gpt)  # fp32 weights + gradients + AdamW's two moments
    lora_state = 4 * (gpt + rest + 4 * lora)
    print(f"  persistent training state (fp32 weights + grads + AdamW, activations excluded): full "
          f"{full_state / 2**30:.2f} GiB, {name.split(' on')[0]} {lora_state / 2**30:.2f} GiB = "
          f"{lora_state / full_state:.2f}")


if __name__ == "__main__":
    main()
