"""Train stage: fine-tune XTTS-v2's GPT (LoRA or full) on the dataset; checkpoints, resume, TensorBoard, export.

The model, batch preparation and loss are coqui-tts's GPTTrainer (see gpt_model.py); this module is the
loop: AMP, gradient accumulation and clipping, LR schedule, validation every epoch, periodic and best
checkpoints, exact resume after any interruption, and the merged export.

    python -m xttsflow.train --base models/base --dataset dataset --set max_steps=40 --set batch_size=2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import yaml

from . import OUTPUT_SAMPLE_RATE, TRAIN_SAMPLE_RATE, checkpoints, cli, distributed, memory_plan, paths, train_data
from .atomic import read_json, write_json
from .errors import XttsflowError
from .gpt_model import (
    apply_lora,
    build_gpt_trainer,
    enable_gradient_checkpointing,
    parameter_counts,
    set_full_finetune,
    set_gpt_dropout,
    trainable_state,
)
from .settings import TrainingSettings, load_settings
from .voices import SPEAKERS_FILE, add_voices, choose_clips
from .xtts_model import export_model, save_adapter

log = logging.getLogger(__name__)

CODE_STRIDE = 1024  # DVAE codes per audio sample at 22050 Hz (gpt_code_stride_len)
LOSSES = ("loss", "loss_text_ce", "loss_mel_ce")  # what coqui's train_step returns


# ---------- set-up ----------


def resolve_device(settings: TrainingSettings, rank: distributed.Rank | None = None) -> torch.device:
    if settings.device == "cpu" or (settings.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise XttsflowError("train: device is cuda but PyTorch sees no CUDA GPU — set train.device: cpu (or auto)")
    if rank is not None and rank.world > 1:  # one GPU per process, in the order CUDA_VISIBLE_DEVICES gives
        return torch.device("cuda", rank.local_rank)
    if settings.cuda_device_id >= torch.cuda.device_count():
        raise XttsflowError(
            f"train: cuda_device_id {settings.cuda_device_id} does not exist ({torch.cuda.device_count()} GPU(s))"
        )
    return torch.device("cuda", settings.cuda_device_id)


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX, through oneDNN); elsewhere PyTorch
    emulates it, slower than float32."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def amp_setup(device: torch.device, settings: TrainingSettings):
    """(autocast dtype or None, GradScaler): on CUDA bf16 where the GPU has it, else fp16 with loss scaling.

    On CPU only an explicit `amp_dtype: bf16` turns autocast on (1.6x faster steps on a CPU with native bf16):
    `auto` stays float32 there, so a CPU run gives the same numbers on every machine."""
    no_scaler = torch.amp.GradScaler("cpu", enabled=False)  # bf16 and float32 need no loss scaling
    if not settings.use_amp:
        return None, no_scaler
    if device.type != "cuda":
        if settings.amp_dtype != "bf16":
            return None, no_scaler
        if not cpu_has_bf16():
            raise XttsflowError("train: amp_dtype bf16 on a CPU without native bfloat16 (AVX512-BF16 or AMX) "
                                "would be slower than float32 — use amp_dtype auto")
        return torch.bfloat16, no_scaler
    bf16 = torch.cuda.is_bf16_supported()
    if settings.amp_dtype == "bf16" and not bf16:
        raise XttsflowError("train: amp_dtype bf16 but this GPU has no bfloat16 — use auto or fp16")
    if settings.amp_dtype == "bf16" or (settings.amp_dtype == "auto" and bf16):
        return torch.bfloat16, torch.amp.GradScaler("cuda", enabled=False)
    return torch.float16, torch.amp.GradScaler("cuda", enabled=True)


def lr_factor(kind: str, warmup: int, total: int):
    """The LR multiplier at each optimizer step: linear warm-up, then constant, cosine or linear decay."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress

    return factor


def base_fingerprint(base_dir: Path) -> str:
    """A content fingerprint of the base model (sizes and the ends of the big files; small files whole)."""
    digest = hashlib.sha1()
    for name in ("config.json", "vocab.json", "model.pth", "dvae.pth", "mel_stats.pth"):
        path = base_dir / name
        digest.update(f"{name}:{path.stat().st_size}".encode())
        with open(path, "rb") as f:
            digest.update(f.read(1 << 20))
            if path.stat().st_size > 2 << 20:
                f.seek(-(1 << 20), 2)
                digest.update(f.read())
    return digest.hexdigest()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------- steps ----------


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class TrainStep(torch.nn.Module):
    """coqui's train_step as a module's forward: DistributedDataParallel wraps this, since its gradient
    hooks are armed by its own forward (the GPTTrainer's forward is not the training step)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model.train_step(batch, None)[1]


def forward(model, batch: dict, device: torch.device, amp_dtype, step: torch.nn.Module | None = None) -> dict:
    """coqui's batch preparation (DVAE codes, conditioning mels; fp32) and train_step losses (under autocast).

    `step`: the DistributedDataParallel-wrapped TrainStep of a data-parallel run (syncs the gradients)."""
    batch = model.format_batch_on_device(_to_device(batch, device))
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        return step(batch) if step is not None else model.train_step(batch, None)[1]


@torch.no_grad()
def evaluate(model, loader, device: torch.device, amp_dtype, rank: distributed.Rank | None = None) -> dict:
    """Mean losses over the validation split, the GPT in eval mode (coqui's eval_step: no prompt masking).

    In a data-parallel run each rank reads its share of the split and the sums are pooled."""
    model.xtts.gpt.eval()
    totals = dict.fromkeys((*LOSSES, "clips"), 0.0)
    try:
        for batch in loader:
            batch["cond_idxs"] = None
            size = len(batch["filenames"])
            for key, value in forward(model, batch, device, amp_dtype).items():
                totals[key] = totals.get(key, 0.0) + value.item() * size
            totals["clips"] += size
    finally:
        model.xtts.gpt.train()
    totals = distributed.sums(rank or distributed.Rank(), totals)
    count = totals.pop("clips")
    return {key: value / count for key, value in totals.items()} if count else {}


@torch.no_grad()
def synthesize_sample(model, text: str, language: str, reference, speaker, seconds: float):
    """Speech for `text` in the voice of `reference` (22050 Hz audio) from the model as it is now (24 kHz)."""
    gpt = model.xtts.gpt
    gpt.eval()
    gpt.init_gpt_for_inference(kv_cache=True, use_deepspeed=False)
    try:
        latents = model.xtts.get_gpt_cond_latents(reference, TRAIN_SAMPLE_RATE, length=6, chunk_length=6)
        max_codes = max(8, int(seconds * TRAIN_SAMPLE_RATE / CODE_STRIDE))
        out = model.xtts.inference(text, language.split("-")[0], latents, speaker, max_new_tokens=max_codes)
    finally:
        del gpt.gpt_inference  # as coqui's GPTTrainer.test_run: the inference wrappers are not trained
        del gpt.gpt.wte
        gpt.train()
    return out["wav"]


class Logger:
    """TensorBoard (when enabled) and the log file: the same numbers in both."""

    def __init__(self, settings: TrainingSettings, log_dir: Path, step: int, enabled: bool = True):
        self.writer = None
        if settings.use_tensorboard and enabled:  # one writer per run: rank 0's
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops the events a killed run logged after its last checkpoint (steps > `step`);
            # those at `step` itself were flushed with that checkpoint (save()) and stay.
            self.writer = SummaryWriter(str(log_dir), purge_step=step + 1 if step else None)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def audio(self, tag: str, wav, step: int) -> None:
        if self.writer:
            self.writer.add_audio(tag, torch.as_tensor(wav).float().clamp(-1, 1), step, sample_rate=OUTPUT_SAMPLE_RATE)

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()


# ---------- the run ----------


class Trainer:
    """One fine-tuning run: model, data, optimizer and counters, with checkpoint save/restore.

    It reads the LJSpeech-layout `dataset_dir` and writes checkpoints, adapter and export to `run_dir` and
    TensorBoard logs to `log_dir` (by default the workflow's checkpoints/<run_name>, runs/<run_name>).
    """

    def __init__(self, settings: TrainingSettings, base_dir: str | Path, language: str | None = None,
                 dataset_dir: str | Path = "dataset", run_dir: str | Path | None = None,
                 log_dir: str | Path | None = None):
        self.settings = s = settings
        self.base_dir = Path(base_dir)
        self.dataset_dir = Path(dataset_dir)
        self.run_dir = Path(run_dir or s.run_dir)
        self.log_dir = Path(log_dir or s.tensorboard_dir)
        self.rank = distributed.current()
        self.device = resolve_device(s, self.rank)
        seed_everything(s.seed)  # the same on every rank: the same LoRA initialisation everywhere
        self.model = build_gpt_trainer(self.base_dir, s.batch_size)
        self._load_data(language)
        if s.gpt_dropout is not None:
            log.info("GPT dropout %.3g in %d places", s.gpt_dropout, set_gpt_dropout(self.model, s.gpt_dropout))
        self.peft = None
        if s.use_lora:
            self.peft = apply_lora(self.model, s.lora_rank, s.lora_alpha, s.lora_dropout, s.lora_target_modules)
        else:
            set_full_finetune(self.model)
        self.counts = parameter_counts(self.model)
        if s.gpu_memory_gb is not None:
            self.settings = s = self._planned(s)
        if s.gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        log.info(
            "trainable parameters: %d of %d in the GPT (%.3f%%; %s), %d in the whole model",
            self.counts["trainable"],
            self.counts["gpt_total"],
            100 * self.counts["trainable"] / self.counts["gpt_total"],
            f"LoRA rank {s.lora_rank} on {', '.join(s.lora_target_modules)}" if s.use_lora else "full GPT",
            self.counts["model_total"],
        )
        self.model.to(self.device)
        self.step_module = self._data_parallel()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=s.learning_rate, betas=(0.9, 0.96), eps=1e-8, weight_decay=s.weight_decay,
            fused=s.fused_optimizer,  # one kernel for all parameters: the same update, less step time
        )
        self.global_batch = s.batch_size * self.rank.world
        self.batches_per_epoch = math.ceil(
            train_data.usable_clips(len(self.train_set), self.rank.world) / self.global_batch)
        steps_per_epoch = math.ceil(self.batches_per_epoch / s.grad_accum_steps)
        self.total_steps = min(s.max_steps or sys.maxsize, s.num_epochs * steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(s.lr_scheduler, s.warmup_steps, self.total_steps)
        )
        self.amp_dtype, self.scaler = amp_setup(self.device, s)
        self.fingerprint = checkpoints.fingerprint_json(
            {**s.fingerprint(), "base": base_fingerprint(self.base_dir), "language": language}
        )
        self.step, self.epoch, self.batch = 0, 0, 0
        self.best_val, self.history = math.inf, []
        self._reference = None  # (audio, speaker embedding, language) for the TensorBoard samples

    def _data_parallel(self) -> torch.nn.Module | None:
        """The DDP-wrapped training step of a data-parallel run (None in a single process).

        Frozen weights get no gradient hooks; buffers never change in training, so they are not re-broadcast
        before every step. After the wrap (which copies rank 0's weights everywhere) each rank draws its
        own dropout masks, as separate GPUs would."""
        if self.rank.world == 1:
            return None
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            TrainStep(self.model), device_ids=[self.device.index] if self.device.type == "cuda" else None,
            broadcast_buffers=False,
        )
        torch.manual_seed(self.settings.seed + 1_000_003 * self.rank.rank)
        return wrapped

    def _planned(self, s: TrainingSettings) -> TrainingSettings:
        """The settings with batch_size, grad_accum_steps and checkpointing that memory_plan fits to the GPU."""
        memory = s.gpu_memory_gb
        if memory == "auto":
            if self.device.type != "cuda":
                log.info("gpu_memory_gb auto: training on %s, so batch_size and grad_accum_steps stay as set",
                         self.device)
                return s
            memory = torch.cuda.get_device_properties(self.device).total_memory / 1e9
        tensors = [*self.model.parameters(), *self.model.buffers()]
        plan = memory_plan.plan(
            float(memory), sum(t.numel() * t.element_size() for t in tensors), self.counts["trainable"],
            max(self.train_set.lengths()) / TRAIN_SAMPLE_RATE, s.batch_size * s.grad_accum_steps,
            True if s.gradient_checkpointing else None,
            gpt_scale=self.model.xtts.gpt.layers * self.model.xtts.gpt.model_dim / memory_plan.MEASURED_GPT,
        )
        log.info("memory plan for a %.1f GB GPU: %s", memory, plan.describe())
        return s.model_copy(update={"batch_size": plan.batch_size, "grad_accum_steps": plan.grad_accum_steps,
                                    "gradient_checkpointing": plan.gradient_checkpointing})

    def _load_data(self, language: str | None) -> None:
        tokenizer, data = self.model.xtts.tokenizer, self.dataset_dir
        language = language or self.settings.language
        train = train_data.screen(train_data.read_split(data, "train", language), tokenizer, "train split")
        train_data.require_clips(train, data / paths.METADATA_TRAIN, "train")
        val = train_data.screen(train_data.read_split(data, "val", language), tokenizer, "val split")
        if not val.samples:
            log.warning("the validation split has no usable clips: best_model is chosen by the epoch's training loss")
        self.train_set = train_data.ClipDataset(train.samples, tokenizer)
        self.val_set = train_data.ClipDataset(val.samples, tokenizer, is_eval=True)
        self.rejected = {"train": dict(train.rejected), "val": dict(val.rejected)}
        log.info("training on %d clips, validating on %d", len(train.samples), len(val.samples))

    # --- checkpoints
    def _state(self) -> dict:
        """The checkpoint's content (every rank calls it: the RNG states of all ranks are gathered in)."""
        rng = checkpoints.rng_state()
        return {
            "format": 1,
            "world": self.rank.world,
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "best_val": self.best_val,
            "history": self.history,
            "trainable": {k: v.cpu().clone() for k, v in trainable_state(self.model).items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "rng_ranks": distributed.gather(self.rank, rng) if self.rank.world > 1 else None,
            "fingerprint": self.fingerprint,
        }

    def save(self) -> Path:
        path = self.run_dir / checkpoints.periodic_name(self.step)
        state = self._state()
        if self.rank.main:
            checkpoints.save(path, state)
            checkpoints.prune(self.run_dir, self.settings.keep_checkpoints)
        return path

    def save_best(self, val: dict) -> None:
        """The best weights for the export, without the optimizer, scheduler and RNG states: a run resumes from
        its periodic checkpoints only, and for full fine-tuning AdamW's moments are 2/3 of a checkpoint."""
        state = self._state()
        if self.rank.main:
            kept = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "scaler", "rng", "rng_ranks")}
            checkpoints.save(self.run_dir / checkpoints.BEST, {**kept, "val": val})

    def load_trainable(self, weights: dict) -> None:
        gpt = self.model.xtts.gpt
        expected = set(trainable_state(self.model))
        if set(weights) != expected:
            raise XttsflowError(
                f"train: a checkpoint in {self.run_dir} holds other trainable weights than this run "
                f"({len(set(weights) ^ expected)} differ) — delete the folder to start over"
            )
        gpt.load_state_dict({k: v.to(self.device) for k, v in weights.items()}, strict=False)

    def restore(self, state: dict) -> None:
        self.load_trainable(state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        self.best_val, self.history = state["best_val"], list(state["history"])
        world = state.get("world", 1)
        if world == self.rank.world:
            checkpoints.set_rng_state((state.get("rng_ranks") or [state["rng"]])[self.rank.rank])
        else:
            self._continue_on_other_world(state, world)
        log.info("resumed from step %d (epoch %d, batch %d)", self.step, self.epoch, self.batch)

    def _continue_on_other_world(self, state: dict, world: int) -> None:
        """A checkpoint of a run on `world` processes, continued on this run's number: the same weights,
        optimizer and step, from the same clip of the same epoch; the global batch changes with the count."""
        s = self.settings
        position = state["batch"] * s.batch_size * world  # clips of this epoch already trained on
        self.batch = position // self.global_batch
        log.warning(
            "this checkpoint was trained on %d process(es) (global batch %d); continuing on %d (global batch %d) "
            "from step %d, clip %d of epoch %d%s — an uninterrupted run on one count would draw other dropout masks",
            world, s.batch_size * world, self.rank.world, self.global_batch, state["step"], position, self.epoch,
            f" ({position - self.batch * self.global_batch} clip(s) of the cut batch are read again)"
            if position % self.global_batch else "",
        )
        checkpoints.set_rng_state(state["rng"])
        if self.rank.world > 1:
            torch.manual_seed(s.seed + 1_000_003 * self.rank.rank + self.step)

    def resume_or_start(self) -> None:
        """Continue from the run's last checkpoint; rank 0 tidies the folder, every rank reads the same one."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.rank.main:
            checkpoints.remove_temporaries(self.run_dir)
        distributed.barrier(self.rank)
        state = checkpoints.latest(self.run_dir, self.fingerprint) if self.settings.resume else None
        distributed.barrier(self.rank)  # nobody is still reading when rank 0 removes stale checkpoints
        if state is None:
            if self.rank.main:
                checkpoints.discard_stale(self.run_dir, self.fingerprint if self.settings.resume else None)
        else:
            self.restore(state)

    # --- the loop
    def optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        max_norm = self.settings.max_grad_norm or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(norm)

    def run(self, progress: bool = True) -> dict:
        """Train to total_steps (or from wherever the last checkpoint left off); return the summary."""
        from tqdm import tqdm

        s = self.settings
        self.resume_or_start()
        logger = Logger(s, self.log_dir, self.step, enabled=self.rank.main)
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {s.run_name}", unit="step",
                   disable=not (progress and self.rank.main), mininterval=1 if sys.stderr.isatty() else 30)
        try:
            while self.step < self.total_steps:
                self._epoch(logger, bar)
        finally:
            bar.close()
            logger.close()
        distributed.barrier(self.rank)
        return self.finish() if self.rank.main else {"rank": self.rank.rank}

    def _epoch(self, logger: Logger, bar) -> None:
        s = self.settings
        batches = train_data.loader(self.train_set, s.batch_size, s.num_workers, s.seed, self.epoch, self.batch,
                                    group_batches=s.batch_group_size, rank=self.rank.rank, world=self.rank.world)
        window, micro, started = Counter(), 0, time.perf_counter()
        for batch in batches:
            last_micro = micro + 1 >= s.grad_accum_steps or self.batch + 1 >= self.batches_per_epoch
            # gradients are averaged over the ranks once per optimizer step, not after every micro-batch
            quiet = self.step_module.no_sync() if self.step_module and not last_micro else contextlib.nullcontext()
            with quiet:
                losses = forward(self.model, batch, self.device, self.amp_dtype, self.step_module)
                self.scaler.scale(losses["loss"] / s.grad_accum_steps).backward()
            micro += 1
            self.batch += 1
            window["samples"] += len(batch["filenames"])
            window["batches"] += 1
            for key, value in losses.items():
                window[key] += value.item()
            if micro < s.grad_accum_steps and self.batch < self.batches_per_epoch:
                continue
            micro = 0
            lr = self.scheduler.get_last_lr()[0]
            grad_norm = self.optimizer_step()
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss'].item():.3f}", refresh=False)
            if self.step % s.log_every_n_steps == 0 or self.step == self.total_steps:
                self._log_train(logger, window, lr, grad_norm, time.perf_counter() - started)
                window, started = Counter(), time.perf_counter()
            if self.step % s.save_every_n_steps == 0 and self.step < self.total_steps:
                logger.flush()  # what the checkpoint's steps logged is on disk before the checkpoint
                self.save()
            if self.step >= self.total_steps:
                break
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        self._validate(logger, window)
        logger.flush()
        self.save()

    def _log_train(self, logger: Logger, window: Counter, lr: float, grad_norm: float, seconds: float) -> None:
        window = distributed.sums(self.rank, {k: window[k] for k in (*LOSSES, "samples", "batches")})
        n = max(1, window["batches"])
        values = {k: window[k] / n for k in LOSSES}
        values.update(lr=lr, grad_norm=grad_norm, samples_per_s=window["samples"] / max(seconds, 1e-9))
        logger.scalars("train", values, self.step)
        self.history.append({"step": self.step, **{k: float(v) for k, v in values.items()}})
        log.info("step %d/%d loss %.4f (text %.4f, mel %.4f) lr %.2e grad-norm %.3f %.1f samples/s", self.step,
                 self.total_steps, values["loss"], values["loss_text_ce"], values["loss_mel_ce"], lr, grad_norm,
                 values["samples_per_s"])

    def _validate(self, logger: Logger, window: Counter) -> None:
        s = self.settings
        val_loader = train_data.loader(self.val_set, s.batch_size, s.num_workers, s.seed, 0,
                                       rank=self.rank.rank, world=self.rank.world)
        val = evaluate(self.model, val_loader, self.device, self.amp_dtype, self.rank) if len(self.val_set) else {}
        score = val.get("loss")
        if score is None:  # no validation clips: fall back to the recent training loss
            logged = [h["loss"] for h in self.history if "loss" in h]  # the same on every rank
            if logged:
                score = logged[-1]
            else:
                pooled = distributed.sums(self.rank, {"loss": window["loss"], "batches": window["batches"]})
                score = pooled["loss"] / max(1, pooled["batches"])
        logger.scalars("val", val, self.step)
        self.history.append({"step": self.step, "epoch": self.epoch, **{f"val_{k}": v for k, v in val.items()}})
        log.info("epoch %d, step %d: validation %s", self.epoch, self.step,
                 ", ".join(f"{k} {v:.4f}" for k, v in val.items()) or "skipped (no clips)")
        if score < self.best_val:
            self.best_val = score
            self.save_best(val)
            log.info("new best model (score %.4f) at step %d", score, self.step)
        if s.eval_audio and s.eval_sentences and logger.writer:
            self._audio_sample(logger)

    def _audio_sample(self, logger: Logger) -> None:
        from TTS.tts.models.xtts import load_audio

        s = self.settings
        if self._reference is None:  # the decoder's speaker encoder never trains: embed the reference once
            sample = (self.val_set.samples or self.train_set.samples)[0]
            audio = load_audio(sample["audio_file"], TRAIN_SAMPLE_RATE).to(self.device)
            speaker = self.model.xtts.get_speaker_embedding(audio, TRAIN_SAMPLE_RATE)
            self._reference = (audio, speaker, sample["language"])
        audio, speaker, language = self._reference
        for i, text in enumerate(s.eval_sentences):
            wav = synthesize_sample(self.model, text, language, audio, speaker, s.eval_audio_seconds)
            logger.audio(f"eval/sample_{i}", wav, self.step)

    def finish(self, export_dir: Path | None = None) -> dict:
        """Adapter + merged export of the chosen checkpoint, and a summary next to them."""
        s = self.settings
        best = self.run_dir / checkpoints.BEST
        chosen = best if s.export_checkpoint == "best" and best.is_file() else checkpoints.periodic(self.run_dir)[-1]
        state = checkpoints.load_state(chosen, "training checkpoint")
        if state.get("fingerprint") != self.fingerprint:
            raise XttsflowError(f"train: {chosen} was trained from another base model or with other settings "
                                f"than {self.base_dir} and these settings — export it with the ones it was made with")
        self.load_trainable(state["trainable"])
        exported_step = state["step"]
        summary = {
            "run": s.run_name,
            "steps": self.step,
            "epochs": self.epoch,
            "exported_step": exported_step,
            "export_checkpoint": s.export_checkpoint,
            "best_val_loss": None if math.isinf(self.best_val) else self.best_val,
            "parameters": self.counts,
            "use_lora": s.use_lora,
            "clips": {"train": len(self.train_set), "val": len(self.val_set)},
            "rejected": self.rejected,
            "history": self.history,
            "settings": s.snapshot(),
            "base_model": str(self.base_dir),
            "dataset": str(self.dataset_dir),
        }
        own_export = export_dir is None  # a re-export elsewhere leaves the run's adapter and summary alone
        if self.peft is not None and own_export:
            save_adapter(self.peft, self.run_dir / paths.LORA)
        voices = choose_clips(self.dataset_dir, self.model.xtts.config.gpt_cond_len)  # the named voice per speaker

        def with_voices(folder: Path, info: dict) -> dict:  # computed with the merged weights, inside the export
            if not voices:
                return info
            found = add_voices(self.model.xtts, self.base_dir / SPEAKERS_FILE, folder / SPEAKERS_FILE, voices)
            return {**info, "voices": found}

        export_model(self.model, self.peft, self.base_dir, export_dir or self.run_dir / paths.EXPORT,
                     {k: v for k, v in summary.items() if k != "history"}, finish=with_voices)
        if own_export:
            write_json(self.run_dir / paths.SUMMARY, summary)
        return summary


def train(settings: TrainingSettings, base_dir: str | Path, language: str | None = None, progress: bool = True,
          dataset_dir: str | Path = "dataset", run_dir: str | Path | None = None, log_dir: str | Path | None = None):
    """Fine-tune from `base_dir` with `settings`; resumes the run's last checkpoint; returns the summary.

    With gpus > 1 this process starts that many data-parallel processes (torchrun) and returns rank 0's
    summary; inside one of them (or one task of a multi-task SLURM job) it is that rank's part of the run."""
    rank = distributed.current()
    run_dir = Path(run_dir or settings.run_dir)
    if settings.gpus > 1 and rank.world == 1:
        distributed.check_gpus(settings.gpus, settings.device)
        job = {"settings": settings.snapshot(), "base_dir": str(base_dir), "language": language,
               "progress": progress, "dataset_dir": str(dataset_dir), "run_dir": str(run_dir),
               "log_dir": str(log_dir or settings.tensorboard_dir)}
        distributed.launch(settings.gpus, "xttsflow.train", job, run_dir, torch.get_num_threads())
        return read_json(run_dir / paths.SUMMARY)
    if rank.world != settings.gpus:
        raise XttsflowError(f"train: this process is rank {rank.rank} of {rank.world} (torchrun or a SLURM job's "
                            f"tasks) but train.gpus is {settings.gpus} — set gpus: {rank.world}, or start one task")
    distributed.start(rank, resolve_device(settings, rank).type)
    try:
        return Trainer(settings, base_dir, language, dataset_dir, run_dir, log_dir).run(progress=progress)
    finally:
        distributed.stop(rank)


def _ddp_worker(job_file: Path) -> None:
    """One rank of a run that train() launched: the job it wrote, its failure sentence written back."""
    rank = distributed.current()
    job = read_json(job_file)
    try:
        train(load_settings(None, env_file=None, **job.pop("settings")), **job)
    except XttsflowError as err:
        distributed.record_error(job_file, rank, str(err))
        raise


def train_job(settings: dict, base_dir: str, dataset_dir: str, export_model: str, summary: str, log_dir: str,
              threads: int = 1) -> dict:
    """The workflow's train job: exactly the settings the rule resolved (its params), on `threads` cores."""
    resolved = load_settings(None, env_file=None, **settings)
    run_dir = Path(summary).parent
    if Path(export_model) != run_dir / paths.EXPORT / paths.MODEL_WEIGHTS:
        raise XttsflowError(f"train: the rule's outputs {export_model}, {summary} are not one run folder's")
    torch.set_num_threads(max(1, threads))
    return train(resolved, base_dir, progress=True, dataset_dir=dataset_dir, run_dir=run_dir, log_dir=log_dir)


# ---------- command line ----------


def _parse_sets(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise XttsflowError(f"--set {pair!r}: write it as name=value (e.g. --set max_steps=40)")
        values[key.strip()] = yaml.safe_load(value)
    return values


def main(argv: list[str] | None = None) -> None:
    from .base_model import prepare_base_model
    from .logs import setup_console
    from .settings import base_model_kind

    parser = cli.parser("train", __doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="workflow config whose train: section is the base layer")
    parser.add_argument("--base", type=Path, help="base model folder (default: from the settings' base_model)")
    parser.add_argument("--dataset", type=Path, default=Path("dataset"), help="dataset folder (LJSpeech layout)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                        help="a training setting (highest priority), e.g. --set lora_rank=16")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--ddp-job", type=Path, help=argparse.SUPPRESS)  # a rank that train() started
    args = parser.parse_args(argv)
    setup_console()
    if not distributed.current().main:  # one voice in the log: the other ranks speak only of problems
        logging.getLogger().setLevel(logging.WARNING)
    if args.ddp_job:
        return _ddp_worker(args.ddp_job)
    section = (yaml.safe_load(args.config.read_text()) or {}).get("train", {}) if args.config else {}
    settings = load_settings(section, **_parse_sets(args.sets))
    if args.threads:
        torch.set_num_threads(args.threads)
    base = args.base
    if base is None:
        spec = settings.base_model_spec
        base = Path(spec) if base_model_kind(spec) == "folder" else paths.base_model()
        if base_model_kind(spec) != "folder" and not base.is_dir():
            prepare_base_model(spec, base, settings.accept_cpml)
    summary = train(settings, base, progress=not args.no_progress, dataset_dir=args.dataset)
    if distributed.current().main:  # the other ranks of a data-parallel run have no summary of their own
        print(f"trained {summary['steps']} steps; export: {settings.run_dir / 'export'}")


if __name__ == "__main__":
    sys.exit(cli.run("train", main))
