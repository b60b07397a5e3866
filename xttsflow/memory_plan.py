"""Memory planner: the batch size x gradient accumulation (and checkpointing) that fit a GPU's memory.

Computed from a measured model, never by trial and error on the user's card: training holds the
weights, the trainable parameters' gradients and AdamW's two moments (fp32), plus the activations
saved for the backward pass, which grow with the clips' length. MEASURED holds those activation
bytes per clip (a quadratic in its seconds) at XTTS-v2's size, measured by
benchmarks/bench_realsize.py on CPU in fp32; under a GPU's bf16/fp16 autocast they are smaller, so the
plan errs on the safe side. CUDA_RESERVED and HEADROOM cover the CUDA context and kernels' workspace
and the caching allocator's fragmentation; both are estimates, not measured on a GPU here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import XttsflowError

GIB = 2**30
#: Activation bytes saved for backward by one clip of s seconds = c0 + c1 s + c2 s^2 (the GPT's attention makes
#: it a little more than linear), XTTS-v2's size, fp32: benchmarks/bench_realsize.py on CPU, LoRA r8, clips of
#: 3, 6 and 11 s (522, 966, 1961 MB plain; 16, 27, 48 MB checkpointed). Full fine-tuning saves the same.
MEASURED = {
    False: (192.75 * 2**20, 90.625 * 2**20, 6.375 * 2**20),  # plain
    True: (6.2 * 2**20, 3.067 * 2**20, 0.0667 * 2**20),  # gradient checkpointing of the GPT-2 blocks
}
#: The GPT size MEASURED was taken at (XTTS-v2's); other sizes scale by layers x channels.
MEASURED_LAYERS = 30
MEASURED_GPT = MEASURED_LAYERS * 1024
CUDA_RESERVED = 1.0 * GIB  # CUDA context + cuBLAS/cuDNN workspaces (typically 0.5-1 GB)
HEADROOM = 1.15  # the caching allocator's fragmentation: plan for 1/1.15 of the card
#: Below this micro-batch the plain path switches to checkpointing when that fits more clips.
PREFERRED_MICRO_BATCH = 4


@dataclass(frozen=True)
class Plan:
    """What to train with: micro-batch, accumulation, checkpointing, and the bytes it was computed to need."""

    batch_size: int
    grad_accum_steps: int
    gradient_checkpointing: bool
    need_bytes: int
    budget_bytes: int

    def describe(self) -> str:
        return (f"batch_size {self.batch_size} x grad_accum_steps {self.grad_accum_steps}"
                f"{' with gradient checkpointing' if self.gradient_checkpointing else ''} "
                f"(needs {self.need_bytes / GIB:.1f} of {self.budget_bytes / GIB:.1f} GiB usable)")


def state_bytes(weight_bytes: int, trainable: int) -> int:
    """Weights as they are, plus fp32 gradients and AdamW's two fp32 moments of the trainable parameters."""
    return weight_bytes + 12 * trainable


def activation_bytes(seconds: float, checkpointing: bool, gpt_scale: float = 1.0) -> int:
    """Bytes one clip of `seconds` needs for the backward pass; gpt_scale = layers x channels / XTTS-v2's.

    With checkpointing, what is saved (MEASURED[True]) plus one block's activations, which the backward
    pass recomputes one block at a time. What the GPT-2 blocks save grows with layers x channels, so a
    smaller GPT is planned by that ratio: measured at XTTS-v2's size, an approximation elsewhere.
    """

    def saved(c0: float, c1: float, c2: float) -> float:
        return c0 + c1 * seconds + c2 * seconds**2

    total = saved(*MEASURED[checkpointing])
    if checkpointing:
        total += saved(*MEASURED[False]) / MEASURED_LAYERS
    return int(total * gpt_scale)


def plan(gpu_memory_gb: float, weight_bytes: int, trainable: int, longest_seconds: float, effective_batch: int,
         checkpointing: bool | None = None, gpt_scale: float = 1.0) -> Plan:
    """The plan for a card of `gpu_memory_gb` GB whose batches may all hold clips of `longest_seconds`.

    `effective_batch` (clips per optimizer step) is kept: batch_size x grad_accum_steps >= it, with the
    fewest accumulation steps. `checkpointing` True/False forces it; None chooses (plain unless
    checkpointing fits a bigger micro-batch where plain fits fewer than PREFERRED_MICRO_BATCH clips).
    """
    budget = int(gpu_memory_gb * 1e9 / HEADROOM - CUDA_RESERVED)
    fixed = state_bytes(weight_bytes, trainable)
    per_clip = {ckpt: activation_bytes(longest_seconds, ckpt, gpt_scale) for ckpt in (False, True)}
    fits = {ckpt: max(0, (budget - fixed) // per_clip[ckpt]) for ckpt in (False, True)}
    if fits[checkpointing is not False] < 1:
        one = per_clip[checkpointing is not False]
        raise XttsflowError(
            f"train: a GPU of {gpu_memory_gb:g} GB cannot train this model: the weights, gradients and optimizer "
            f"state take {fixed / GIB:.1f} GiB and one {longest_seconds:.1f} s clip's activations {one / GIB:.1f} "
            f"GiB more, so it needs about {(fixed + one + CUDA_RESERVED) * HEADROOM / 1e9:.1f} GB — use a GPU with "
            "more memory, LoRA (use_lora: true) instead of full fine-tuning, or shorter clips (dataset.max_duration)"
        )
    if checkpointing is None:
        plain = min(fits[False], effective_batch)
        checkpointing = plain < min(PREFERRED_MICRO_BATCH, effective_batch) and fits[True] > plain
    micro = int(min(fits[checkpointing], effective_batch))
    accum = math.ceil(effective_batch / micro)
    micro = math.ceil(effective_batch / accum)  # the same accumulation with the smallest micro-batch
    need = fixed + micro * per_clip[checkpointing]
    return Plan(micro, accum, checkpointing, need, budget)


def table(rows=(8, 12, 16, 24, 48, 80), weight_bytes: int = 0, lora_trainable: int = 0, full_trainable: int = 0,
          longest_seconds: float = 11.6, effective_batch: int = 32) -> list[str]:
    """Markdown rows 'GPU memory -> settings' for LoRA and full fine-tuning (docs/train.md)."""
    lines = []
    for gb in rows:
        cells = []
        for trainable in (lora_trainable, full_trainable):
            try:
                p = plan(gb, weight_bytes, trainable, longest_seconds, effective_batch)
                ckpt = ", checkpointing" if p.gradient_checkpointing else ""
                cells.append(f"{p.batch_size} x {p.grad_accum_steps}{ckpt} ({p.need_bytes / GIB:.1f} GiB)")
            except XttsflowError:
                cells.append("does not fit")
        lines.append(f"| {gb} GB | {cells[0]} | {cells[1]} | computed, not confirmed on a GPU |")
    return lines
