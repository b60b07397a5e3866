"""Data-parallel training on several processes: who this process is, the process group, the launch.

A process is one rank of a data-parallel run when torchrun started it (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT in its environment) or when SLURM did, as one task of an `srun` step with several
(SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID; the rendezvous is the job's first node) — that second way is
what spans several nodes. Anything else is the one process of a plain run, whose code paths stay as they
were: every collective below is a no-op at world size 1.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_json
from .errors import XttsflowError

log = logging.getLogger(__name__)

SLURM_PORT_BASE = 20000  # the rendezvous port of a SLURM-launched run: this plus the job id modulo 10000


@dataclass(frozen=True)
class Rank:
    """This process's place in the run: rank (0 writes the files), world (processes), local_rank (its GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def current() -> Rank:
    """The rank torchrun or a multi-task SLURM job gave this process; rank 0 of 1 otherwise."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return Rank(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    # SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: only a task of an srun step is a rank; a process that merely runs
    # inside a multi-task allocation (the batch script, an salloc shell, a workflow job) is not.
    if int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return Rank(int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return Rank()


def _slurm_rendezvous() -> None:
    """MASTER_ADDR/PORT for a job whose tasks srun started: the first node of the job, a port from its id."""
    env = os.environ
    if "MASTER_ADDR" not in env:
        nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
        first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True)
        env["MASTER_ADDR"] = first.stdout.split()[0] if first.returncode == 0 and first.stdout.split() else nodes
    env.setdefault("MASTER_PORT", str(SLURM_PORT_BASE + int(env.get("SLURM_JOB_ID", "0")) % 10000))


def start(rank: Rank, device_type: str) -> None:
    """Join the process group (NCCL between GPUs, gloo between CPU processes); nothing at world size 1."""
    if rank.world == 1:
        return
    import torch.distributed as dist

    if "RANK" not in os.environ:  # started by SLURM, not torchrun: init_process_group reads these
        _slurm_rendezvous()
        os.environ.update(RANK=str(rank.rank), WORLD_SIZE=str(rank.world), LOCAL_RANK=str(rank.local_rank))
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    log.info("rank %d of %d (local %d) joined the %s process group", rank.rank, rank.world, rank.local_rank,
             dist.get_backend())


def stop(rank: Rank) -> None:
    if rank.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(rank: Rank) -> None:
    if rank.world > 1:
        import torch.distributed as dist

        dist.barrier()


def gather(rank: Rank, value) -> list:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if rank.world == 1:
        return [value]
    import torch.distributed as dist

    found = [None] * rank.world
    dist.all_gather_object(found, value)
    return found


def sums(rank: Rank, values: dict[str, float]) -> dict[str, float]:
    """Each key summed over the ranks (the keys must be the same on every rank)."""
    if rank.world == 1:
        return dict(values)
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist(), strict=True))


# ---------- the launch: torchrun on one node ----------


def check_gpus(processes: int, device: str) -> None:
    """`processes` data-parallel processes need that many GPUs, unless they are CPU processes (device: cpu)."""
    if processes == 1 or device == "cpu":
        return
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < processes:
        raise XttsflowError(
            f"train: gpus is {processes} but PyTorch sees {found} CUDA GPU(s) on this machine — set train.gpus to "
            f"at most {found}" + (" (or device: cpu to run CPU processes, which only tests are for)" if not found
                                   else "") + "; under SLURM ask for the GPUs with the rule's gpu resource"
        )


def launch(processes: int, module: str, job: dict, run_dir: Path, threads: int) -> None:
    """Run `python -m module --ddp-job FILE` on `processes` local processes through torchrun and wait.

    FILE holds `job` (JSON). A rank that fails with an XttsflowError writes its sentence next to FILE;
    the first such sentence is raised here, so the user reads the reason, not torchrun's report.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    job_file = run_dir / ".ddp_job.json"
    write_json(job_file, job)
    for stale in run_dir.glob(".ddp_error.*"):
        stale.unlink()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", module, "--ddp-job", str(job_file)]
    # Each process gets its share of the job's cores (torchrun would otherwise pin every one to 1 thread).
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // processes))}
    log.info("starting %d data-parallel processes: %s", processes, " ".join(command))
    out = sys.stdout if _has_fd(sys.stdout) else None  # the rule's log file, where to_file sent stdout
    err = sys.stderr if _has_fd(sys.stderr) else None
    proc = subprocess.run(command, env=env, stdout=out, stderr=err)
    errors = sorted(run_dir.glob(".ddp_error.*"))
    if errors:
        raise XttsflowError(errors[0].read_text().strip())
    if proc.returncode:
        raise XttsflowError(f"train: the {processes} data-parallel processes failed (exit {proc.returncode}); "
                            "the log above has each rank's traceback")
    job_file.unlink(missing_ok=True)


def record_error(job_file: Path, rank: Rank, sentence: str) -> None:
    (job_file.parent / f".ddp_error.{rank.rank}").write_text(sentence)


def _has_fd(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False
