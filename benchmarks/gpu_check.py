"""The GPU check: XTTS-v2's real size (builtin:xtts-v2-size) on one NVIDIA GPU, one table. Run by gpu_check.sh.

Rows: train steps in bf16 and in fp16 with the GradScaler (loss finite, step time, clips/s; LoRA r8,
batch 4 of 11 s clips), peak VRAM per batch size with and without gradient checkpointing next to what
xttsflow/memory_plan.py predicts for it, synthesis real-time factor and first streamed audio latency,
and faster-whisper (bundled tiny.en) on CUDA. Every part has its own time limit; a part that fails
prints its error in its row and the others still run.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROWS: list[tuple[str, str, str]] = []


def row(what: str, result: str, note: str = "") -> None:
    ROWS.append((what, result, note))
    print(f"  {what}: {result} {note}", flush=True)


def make_dataset(folder: Path, clips: int, seconds: float) -> Path:
    """Clips of a harmonic voice-like signal (no espeak-ng needed), LJSpeech layout."""
    from xttsflow.atomic import write_json
    from xttsflow.audio import write_wav
    from xttsflow.xtts_model import _voice_like

    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    text = "this voice was fine tuned from a few minutes of recordings and it speaks clearly now"
    rows = []
    for i in range(clips):
        write_wav(folder / "wavs" / f"c{i:03d}.wav", _voice_like(seconds, seed=i).numpy()[0], 22050)
        rows.append(f"c{i:03d}|{text}|{text}")
    (folder / "metadata_train.csv").write_text("\n".join(rows) + "\n")
    (folder / "metadata_val.csv").write_text(rows[0] + "\n")
    write_json(folder / "stats.json", {"datasets": [{"formatter": "ljspeech", "path": ".", "language": "en",
                                                     "meta_file_train": "metadata_train.csv",
                                                     "meta_file_val": "metadata_val.csv"}]})
    return folder


def trainer_for(base: Path, data: Path, work: Path, **overrides):
    from xttsflow.settings import load_settings
    from xttsflow.train import Trainer

    values = dict(language="en", device="cuda", batch_size=4, num_workers=2, use_tensorboard=False, eval_audio=False,
                  max_steps=8, resume=False, save_every_n_steps=10**6, log_every_n_steps=10**6)
    s = load_settings(None, env_file=None, **{**values, **overrides})
    return Trainer(s, base, dataset_dir=data, run_dir=work / "run", log_dir=work / "tb")


class _Done(Exception):
    pass


def train_steps(base: Path, data: Path, work: Path, amp_dtype: str, steps: int = 8) -> None:
    import torch

    trainer = trainer_for(base, data, work / amp_dtype, amp_dtype=amp_dtype, max_steps=steps)
    stamps, losses = [], []
    step, forward = trainer.optimizer_step, trainer.model.train_step

    def timed() -> float:
        norm = step()
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        if len(stamps) == steps:
            raise _Done
        return norm

    def recorded(batch, criterion):
        out = forward(batch, criterion)
        losses.append(float(out[1]["loss"]))
        return out

    trainer.optimizer_step, trainer.model.train_step = timed, recorded
    with contextlib.suppress(_Done):
        trainer.run(progress=False)
    diffs = [b - a for a, b in zip(stamps[2:], stamps[3:], strict=False)]
    took = statistics.median(diffs)
    finite = all(math.isfinite(x) for x in losses)
    scale = f", GradScaler scale {trainer.scaler.get_scale():.0f}" if trainer.scaler.is_enabled() else ""
    row(f"train {amp_dtype} LoRA r8 batch 4 x 11 s", f"{took:.3f} s/step, {4 / took:.1f} clips/s",
        f"(loss finite: {finite}, first {losses[0]:.3f} last {losses[-1]:.3f}{scale})")
    del trainer
    torch.cuda.empty_cache()


def peak_vram(base: Path, data: Path, work: Path) -> None:
    import torch

    from xttsflow import memory_plan, train_data
    from xttsflow.train import forward

    trainer = trainer_for(base, data, work / "vram", amp_dtype="bf16", batch_size=1)
    tensors = [*trainer.model.parameters(), *trainer.model.buffers()]
    weights = sum(t.numel() * t.element_size() for t in tensors)
    for checkpointing in (False, True):
        if checkpointing:
            from xttsflow.gpt_model import enable_gradient_checkpointing

            enable_gradient_checkpointing(trainer.model)
        for batch_size in (1, 2, 4, 8, 16):
            predicted = memory_plan.state_bytes(weights, trainer.counts["trainable"]) + batch_size * (
                memory_plan.activation_bytes(11.0, checkpointing))
            batch = train_data.collate([trainer.train_set[(i % len(trainer.train_set), i)] for i in range(batch_size)])
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                losses = forward(trainer.model, batch, trainer.device, trainer.amp_dtype)
                losses["loss"].backward()
                trainer.optimizer.step()
                trainer.optimizer.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
                peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
            except torch.OutOfMemoryError:
                peak = "out of memory"
                trainer.optimizer.zero_grad(set_to_none=True)
            row(f"peak VRAM bf16 batch {batch_size} x 11 s{' checkpointing' if checkpointing else ''}", peak,
                f"(planner predicts {predicted / 2**30:.2f} GiB)")
    del trainer
    torch.cuda.empty_cache()


def synthesis(base: Path, data: Path) -> None:
    from xttsflow.inference import Synthesizer

    synth = Synthesizer(base, device="cuda")
    voice = synth.voice([str(data / "wavs" / "c000.wav")])
    text = "This is the first sentence of a longer text. And here is a second one, to stream after it."
    synth.synthesize("Warm up.", "en", voice)
    started = time.perf_counter()
    first, total = None, 0
    for chunk in synth.stream(text, "en", voice):
        first = first or time.perf_counter() - started
        total += len(chunk)
    took = time.perf_counter() - started
    seconds = total / synth.sample_rate
    row("synthesis (random weights: babble)", f"RTF {took / max(seconds, 1e-9):.3f}",
        f"({seconds:.1f} s of audio in {took:.2f} s; first streamed sentence after {first:.2f} s)")


def whisper(data: Path) -> None:
    import soundfile as sf
    from faster_whisper import WhisperModel

    from xttsflow.asr.models import resolve_model

    model = WhisperModel(resolve_model("bundled:tiny.en"), device="cuda", compute_type="float16")
    clip = str(data / "wavs" / "c000.wav")  # by path: faster-whisper decodes and resamples it to 16 kHz
    list(model.transcribe(clip, language="en")[0])  # warm-up
    started = time.perf_counter()
    segments, _ = model.transcribe(clip, language="en")
    list(segments)
    took = time.perf_counter() - started
    seconds = sf.info(clip).duration
    row("faster-whisper tiny.en float16 on CUDA", f"RTF {took / seconds:.3f}", f"({took:.2f} s)")


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: PyTorch sees no CUDA GPU here — run it on a machine with an NVIDIA GPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name(0)
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    print(f"gpu_check on {name} ({total:.0f} GiB), torch {torch.__version__}", flush=True)
    from xttsflow.base_model import prepare_base_model

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        base = prepare_base_model("builtin:xtts-v2-size", work / "base")
        row("build builtin:xtts-v2-size", f"{time.perf_counter() - started:.0f} s")
        data = make_dataset(work / "dataset", clips=40, seconds=11.0)
        parts = [("bf16 steps", lambda: train_steps(base, data, work, "bf16")),
                 ("fp16 steps", lambda: train_steps(base, data, work, "fp16")),
                 ("peak VRAM", lambda: peak_vram(base, data, work)),
                 ("synthesis", lambda: synthesis(base, data)),
                 ("faster-whisper", lambda: whisper(data))]
        for what, part in parts:
            try:
                part()
            except Exception as err:  # noqa: BLE001 - one broken part must not hide the others' rows
                row(what, f"FAILED: {type(err).__name__}: {str(err)[:200]}")
                traceback.print_exc()
    width = max(len(r[0]) for r in ROWS)
    print(f"\n| {'measurement':{width}s} | result | notes |\n|{'-' * (width + 2)}|---|---|")
    for what, result, note in ROWS:
        print(f"| {what:{width}s} | {result} | {note.strip('()')} |")


if __name__ == "__main__":
    main()
