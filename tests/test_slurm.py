"""profiles/slurm proven on a real one-node SLURM on localhost (cluster/local-slurm, root only).

The smallest run that reaches a GPU rule: one short espeak recording, `until: transcribe`
(ingest_local -> segment -> transcribe, the last with `gpu: 1` in the GPU partition). Every job must be
a SLURM job that completed in the partition the profile names, and the outputs must equal a local run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, planned_jobs, write_config
from test_profiles import GPU_RULES, local_slurm_profile, profile_gpu_rules
from test_train_ddp import EXACT, max_difference
from test_train_ddp import dataset as ddp_dataset
from train_fixtures import FAST, folders, settings, tiny_base

from xttsflow import checkpoints
from xttsflow.audio import write_wav
from xttsflow.train import train

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

LOCAL_SLURM = REPO / "cluster" / "local-slurm"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun")
UNTIL = "transcribe"
CPU_PARTITION, GPU_PARTITION = "local", "local-gpu"
RUN_LIMIT_S = 240  # the whole SLURM run; `timeout -k` ends it if the status polling ever hangs
# Outputs to compare with the local run (logs and benchmarks hold timings, so they differ).
COMPARED = ("raw", "segments", "transcripts", "embeddings")
# Facts of the run, not of the result, inside otherwise equal JSON outputs: wall-clock timings and the
# CPU threads the job had (transcripts' stats).
VOLATILE_KEYS = {"transcribe_seconds", "realtime_factor", "threads"}


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start munged, slurmctld and slurmd (CI runs `make test` as root)"
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return f"SLURM/munge binaries missing: {', '.join(missing)} (make system-deps installs slurm-wlm and munge)"
    etc_conf = Path("/etc/slurm/slurm.conf")
    if etc_conf.is_symlink() and etc_conf.exists():
        return (f"a one-node SLURM from cluster/local-slurm is already running ({etc_conf} -> {etc_conf.readlink()}); "
                "stop it with cluster/local-slurm/teardown.sh <its folder>")
    if etc_conf.exists():
        return f"this host has its own SLURM ({etc_conf}): the test will not start a second one beside it"
    return None


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory, request) -> dict[str, str]:
    """A running one-node SLURM; its environment (SLURM_CONF). Torn down by pid file in a finalizer."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    # Registered before the start, so a half-started cluster is stopped too.
    request.addfinalizer(lambda: subprocess.run([str(LOCAL_SLURM / "teardown.sh"), str(state)], timeout=120))
    env = {**os.environ, "SLURM_PARTITION": CPU_PARTITION, "SLURM_GPU_PARTITION": GPU_PARTITION}
    proc = subprocess.run([str(LOCAL_SLURM / "setup.sh"), str(state)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, f"setup.sh failed:\n{proc.stdout}\n{proc.stderr}"
    exported = dict(re.findall(r"^export (\w+)=(.*)$", proc.stdout, re.MULTILINE))
    assert exported["XTTSFLOW_SLURM_GPU_PARTITION"] == GPU_PARTITION
    return {**os.environ, "SLURM_CONF": exported["SLURM_CONF"]}


def make_workdir(path: Path, speech) -> Path:
    path.mkdir(parents=True)
    write_wav(path / "recordings" / "take.wav", speech.samples, speech.sample_rate)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["sources"] = [{"path": "recordings/take.wav", "speaker": "lea", "language": "en"}]
    config["until"] = UNTIL
    write_config(path, config)
    return path


def digest(path: Path) -> str:
    """Content hash; JSON is compared without per-run fields, so that timings do not count."""
    if path.suffix == ".json":
        def strip(value):
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value
        data = json.dumps(strip(json.loads(path.read_text())), sort_keys=True).encode()
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()


def outputs(workdir: Path) -> dict[str, str]:
    return {str(p.relative_to(workdir)): digest(p) for top in COMPARED for p in sorted((workdir / top).rglob("*"))
            if p.is_file()}


def squeue_jobs(env: dict, job_ids: list[str]) -> dict[str, dict[str, str]]:
    """State, partition, comment (the plugin writes the rule there) and GPU request of SLURM jobs."""
    proc = subprocess.run(["squeue", "--states=all", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%P|%k"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    jobs = {}
    for line in proc.stdout.splitlines():
        job_id, state, partition, comment = line.split("|", 3)
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env).stdout
        gpus = re.search(r"TresPerJob=\S*gpu[:=](\d+)", shown)
        jobs[job_id] = {"state": state, "partition": partition, "comment": comment, "gpus": gpus[1] if gpus else "0"}
    return jobs


def test_workflow_on_local_slurm_matches_local_run(slurm_env, make_speech, tmp_path):
    speech = make_speech(["The lighthouse keeper counted the ships.", "A storm came over the grey sea.",
                          "By morning the harbour was calm again."], [0.9, 0.9])
    on_slurm = make_workdir(tmp_path / "slurm", speech)
    local = make_workdir(tmp_path / "local", speech)
    expected = planned_jobs(on_slurm)
    assert set(GPU_RULES) & set(expected), f"the run reaches no GPU rule: {expected}"

    # The local reference run goes on while the SLURM jobs wait in the queue (2 cores, mostly idle).
    local_cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(local), "--cores", "2"]
    local_run = subprocess.Popen(local_cmd, cwd=local, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    profile = local_slurm_profile(tmp_path / "profile", CPU_PARTITION, GPU_PARTITION)
    slurm_cmd = ["timeout", "-k", "10", str(RUN_LIMIT_S), *SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"),
                 "--directory", str(on_slurm), "--profile", str(profile),
                 # No slurmdbd here: squeue (with MinJobAge=600) reports job states; sacct would hang.
                 "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                 "--slurm-keep-successful-logs", "--slurm-no-account"]
    proc = subprocess.run(slurm_cmd, cwd=on_slurm, capture_output=True, text=True, env=slurm_env,
                          timeout=RUN_LIMIT_S + 30)
    log = proc.stdout + proc.stderr
    local_out = local_run.communicate(timeout=300)[0]
    assert proc.returncode == 0, f"SLURM run failed ({proc.returncode}; 124 = timed out):\n{log[-6000:]}"
    assert local_run.returncode == 0, f"local run failed:\n{local_out[-4000:]}"

    # Every job (but the target rule `all`) was submitted with sbatch ...
    submitted: dict[str, list[str]] = {}
    for job_id, logfile in re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", log):
        # .snakemake/slurm_logs/rule_<rule>[/<wildcards>]/<jobid>.log
        rule = next(part for part in Path(logfile).parts if part.startswith("rule_")).removeprefix("rule_")
        submitted.setdefault(rule, []).append(job_id)
        assert "Finished jobid" in Path(logfile).read_text(), f"SLURM log {logfile} shows no finished job"
    assert {rule: len(ids) for rule, ids in submitted.items()} == {r: n for r, n in expected.items() if r != "all"}
    assert not re.findall(r"^localrule (?!all:)\w+", log, re.MULTILINE), "a job ran outside SLURM"

    # ... and SLURM ran it to completion in the partition the profile names, with a GPU for GPU rules.
    jobs = squeue_jobs(slurm_env, [i for ids in submitted.values() for i in ids])
    for rule, ids in submitted.items():
        gpu_rule = rule in profile_gpu_rules("slurm")
        for job_id in ids:
            job = jobs[job_id]
            assert job["state"] == "COMPLETED", (rule, job)
            assert job["comment"].startswith(f"rule_{rule}"), (rule, job)
            assert job["partition"] == (GPU_PARTITION if gpu_rule else CPU_PARTITION), (rule, job)
            assert job["gpus"] == ("1" if gpu_rule else "0"), (rule, job)

    # Same results as the local run, file for file.
    produced, reference = outputs(on_slurm), outputs(local)
    assert any(name.startswith("transcripts/") for name in produced), sorted(produced)
    differ = sorted(name for name in produced.keys() | reference.keys() if produced.get(name) != reference.get(name))
    assert not differ, f"SLURM and local outputs differ: {differ}"
    assert planned_jobs(on_slurm) == {}, "the SLURM run left work to do"


def test_two_slurm_tasks_train_as_the_two_ranks_of_one_run(slurm_env, tmp_path):
    """`srun` with --ntasks=2: each task is one rank (SLURM_PROCID), the job's node the rendezvous; the weights
    equal one local process with the same global batch (batch 2 x 2 accumulation steps)."""
    exact = {**FAST, **EXACT, "max_steps": 2, "batch_size": 2}
    run = tmp_path / "slurm-ddp"
    run.mkdir()
    sets = [arg for key, value in {**exact, "gpus": 2}.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    command = [sys.executable, "-m", "xttsflow.train", "--base", str(tiny_base()), "--dataset", str(ddp_dataset()),
               "--threads", "1", "--no-progress", *sets]
    (run / "job.sh").write_text("#!/bin/bash\nsrun " + shlex.join(command) + "\n")
    proc = subprocess.run(["sbatch", "--wait", "--ntasks=2", f"--partition={CPU_PARTITION}", f"--chdir={run}",
                           "--output=job.log", str(run / "job.sh")], capture_output=True, text=True, env=slurm_env,
                          timeout=RUN_LIMIT_S)
    log = (run / "job.log").read_text() if (run / "job.log").exists() else ""
    assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}\n{log[-4000:]}"
    assert "rank 0 of 2 (local 0) joined the gloo process group" in log, log[-3000:]
    state = checkpoints.load_state(run / "checkpoints" / "main" / checkpoints.periodic_name(2))
    assert state["world"] == 2

    local = train(settings(**EXACT, max_steps=2, batch_size=2, grad_accum_steps=2), tiny_base(), progress=False,
                  **folders(tmp_path / "local", ddp_dataset()))
    assert local["steps"] == 2
    reference = checkpoints.load_state(tmp_path / "local/checkpoints/main" / checkpoints.periodic_name(2))
    assert max_difference(state["trainable"], reference["trainable"]) < 1e-5


def test_skip_reason_is_clear_without_root(monkeypatch):
    """Where the cluster test cannot run, it says why instead of failing."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in skip_reason()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "slurmctld" else f"/usr/bin/{name}")
    assert "slurmctld" in skip_reason() and "slurm-wlm" in skip_reason()

