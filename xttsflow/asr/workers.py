"""How many model workers a job runs, and transcription of many files across them.

On CPU one model uses all the job's threads; on GPU as many workers as fit in free VRAM, each needing
what its backend says (`Backend.worker_memory`), at most one per thread.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor, as_completed

from ..errors import XttsflowError
from . import BACKENDS
from .config import TranscribeConfig
from .transcriber import Transcriber, make_transcriber


def worker_memory(cfg: TranscribeConfig) -> int:
    """GPU bytes one worker needs: weights at the compute type, activations growing with the batch, context."""
    return BACKENDS[cfg.backend].worker_memory(cfg)


def free_gpu_memory() -> int:
    """Free bytes on the first visible GPU, from nvidia-smi: this process then holds no CUDA context of its own."""
    exe = shutil.which("nvidia-smi")
    if exe:
        device = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip()
        proc = subprocess.run([exe, "-i", device, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            return int(float(proc.stdout.split()[0]) * 2**20)
    import torch

    return torch.cuda.mem_get_info()[0]


def plan_workers(cfg: TranscribeConfig, device: str, threads: int, n_files: int, free_vram: int | None = None) -> int:
    """How many model workers: a number from config, or on GPU as many as fit in free VRAM (one on CPU)."""
    if isinstance(cfg.workers, int):
        wanted = cfg.workers
    elif device == "cuda":
        if free_vram is None:
            free_vram = free_gpu_memory()
        need = worker_memory(cfg)
        wanted = free_vram // need
        if wanted < 1:
            raise XttsflowError(f"transcribe: model {cfg.model} needs ~{need / 2**30:.1f} GiB of GPU "
                                f"memory but only {free_vram / 2**30:.1f} GiB are free — use a smaller model, "
                                "compute_type int8_float16, a smaller batch_size, or device cpu")
        wanted = min(wanted, max(1, threads))  # each worker needs a core to feed it
    else:
        wanted = 1  # on CPU one model uses all the job's threads; more copies only compete for them
    return max(1, min(int(wanted), n_files))


_WORKER: Transcriber | None = None


def _init_worker(cfg: TranscribeConfig, threads: int) -> None:
    global _WORKER
    _WORKER = make_transcriber(cfg, threads)


def _work(paths: list[str], language: str | None) -> list[dict]:
    return _WORKER.transcribe(paths, language)


def transcribe_files(paths: list, language: str | None, cfg: TranscribeConfig, threads: int = 1,
                     on_done=None) -> tuple[list[dict], dict]:
    """Results for `paths` (one model per worker) and how they were made; on_done(index, result) as each finishes."""
    results: list[dict] = [{}] * len(paths)

    def finished(i: int, result: dict) -> None:
        results[i] = result
        if on_done:
            on_done(i, result)

    backend = BACKENDS[cfg.backend]
    device = backend.resolve_device(cfg.device)
    workers = plan_workers(cfg, device, threads, len(paths))
    chunk = backend.chunk_size(cfg, device)
    chunks = [list(range(i, min(i + chunk, len(paths)))) for i in range(0, len(paths), chunk)]
    if workers == 1:
        transcriber = make_transcriber(cfg, threads)
        for idx in chunks:
            for i, result in zip(idx, transcriber.transcribe([paths[i] for i in idx], language), strict=True):
                finished(i, result)
    else:
        # spawn: CUDA cannot be used in a forked child; each worker loads the model once in its initializer.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(cfg, max(1, threads // workers))) as pool:
            futures = {pool.submit(_work, [str(paths[i]) for i in idx], language): idx for idx in chunks}
            for future in as_completed(futures):
                for i, result in zip(futures[future], future.result(), strict=True):
                    finished(i, result)
    return results, {"backend": cfg.backend, "model": cfg.model, "version": backend.version(), "device": device,
                     "workers": workers, "threads": threads}
