"""profiles/slurm and profiles/workstation: valid Snakemake 9 options, every key commented, and the plan
they give: GPU rules ask for one GPU (in the GPU partition on SLURM), the other rules do not."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from conftest import REPO, write_config

PROFILES = REPO / "profiles"
# The GPU stages' rules; any other rule that declares a `gpu` resource counts as a GPU rule too.
GPU_RULES = ("transcribe", "train", "synthesize")
# GPU rules that size their own request (train: train.gpus data-parallel processes): a profile's `gpu:` would
# replace that number, so the profiles give them a partition and limits but no `gpu:`.
SELF_SIZED_GPU_RULES = ("train",)


def local_slurm_profile(dest: Path, cpu_partition: str, gpu_partition: str) -> Path:
    """profiles/slurm with its partitions replaced (CPU default -> cpu_partition, others -> gpu_partition)
    and without `software-deployment-method` (conda cannot be reached here); everything else as shipped."""
    profile = yaml.safe_load((PROFILES / "slurm" / "profile.yaml").read_text())
    default_partition = profile["default-resources"]["slurm_partition"]
    profile["default-resources"]["slurm_partition"] = cpu_partition
    for resources in profile["set-resources"].values():
        if "slurm_partition" in resources:
            same = resources["slurm_partition"] == default_partition
            resources["slurm_partition"] = cpu_partition if same else gpu_partition
    profile.pop("software-deployment-method")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


@cache
def snakemake_options() -> set[str]:
    """Long options `snakemake --help` lists (the installed executor plugins' included)."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"--([a-z][a-z0-9-]+)", out))


def profile_gpu_rules(name: str) -> set[str]:
    """The rules that get a GPU under a profile: from its set-resources, or asked for by the rule itself."""
    profile = yaml.safe_load((PROFILES / name / "profile.yaml").read_text())
    return {rule for rule, resources in profile["set-resources"].items() if resources.get("gpu")} | set(
        SELF_SIZED_GPU_RULES)


@cache
def workflow_rules() -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {line.strip() for line in proc.stdout.splitlines() if re.fullmatch(r"\s*\w+\s*", line)}


def uncommented_keys(text: str) -> list[str]:
    """YAML key lines with no comment on the line itself or on the line just above."""
    lines = text.splitlines()
    bare = []
    for i, line in enumerate(lines):
        if re.match(r"^\s*[\w-]+:", line) and "#" not in line:
            above = lines[i - 1].strip() if i else ""
            if not above.startswith("#"):
                bare.append(line.strip())
    return bare


def plan_resources(workdir: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    """rule -> the resources of each of its jobs, from a dry run's job listing."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(workdir), "--dry-run", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in proc.stdout.splitlines():
        if match := re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):", line):
            rule = match[1]
        elif rule and (match := re.match(r"^\s+resources: (.*)$", line)):
            plan.setdefault(rule, []).append(dict(kv.split("=", 1) for kv in match[1].split(", ")))
            rule = None
    return plan


@pytest.fixture(scope="module")
def dry_workdir(tmp_path_factory) -> Path:
    """A config over the demo recordings (absolute paths), the whole workflow planned, nothing run."""
    workdir = tmp_path_factory.mktemp("profiles")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["sources"] = [{"path": str(REPO / "demo" / "recordings"), "speaker": "demo", "language": "en"}]
    config["until"] = "evaluate"
    write_config(workdir, config)
    return workdir


@pytest.mark.parametrize("name", ["slurm", "workstation", "default"])
def test_profile_keys_are_snakemake_options_and_all_commented(name):
    text = (PROFILES / name / "profile.yaml").read_text()
    profile = yaml.safe_load(text)
    unknown = sorted(set(profile) - snakemake_options())
    assert not unknown, f"profiles/{name}: not Snakemake options: {unknown}"
    assert not uncommented_keys(text), f"profiles/{name}: keys without a comment: {uncommented_keys(text)}"


@pytest.fixture(scope="module")
def declared_gpu_rules(dry_workdir) -> set[str]:
    """Rules whose jobs ask for a GPU in a plain run (their own `resources: gpu=`), plus the GPU stages."""
    plan = plan_resources(dry_workdir)
    return set(GPU_RULES) | {rule for rule, jobs in plan.items() if any(job.get("gpu") for job in jobs)}


@pytest.mark.parametrize("name", ["slurm", "workstation"])
def test_profile_gives_each_gpu_rule_one_gpu(name, declared_gpu_rules):
    profile = yaml.safe_load((PROFILES / name / "profile.yaml").read_text())
    rules = workflow_rules()
    missing = sorted(set(GPU_RULES) - rules)
    assert not missing, f"GPU rules {missing} are not rules of the workflow (rules: {sorted(rules)})"
    assert set(profile["set-resources"]) <= rules, "set-resources names a rule the workflow does not have"
    for rule in sorted(declared_gpu_rules):
        resources = profile["set-resources"].get(rule, {})
        if rule in SELF_SIZED_GPU_RULES:
            assert "gpu" not in resources, f"profiles/{name}: gpu: for {rule} would replace train.gpus"
        else:
            assert resources.get("gpu") == 1, f"profiles/{name}: GPU rule {rule} is not given gpu: 1 in set-resources"


def test_slurm_profile_sends_gpu_rules_to_a_gpu_partition_for_longer():
    profile = yaml.safe_load((PROFILES / "slurm" / "profile.yaml").read_text())
    assert set(GPU_RULES) <= profile_gpu_rules("slurm")
    assert profile["executor"] == "slurm"
    assert profile["software-deployment-method"] == "conda"
    assert profile["rerun-incomplete"] is True and profile["retries"] >= 1 and profile["latency-wait"] >= 10
    defaults = profile["default-resources"]
    assert {"runtime", "mem_mb", "slurm_partition"} <= set(defaults)
    for rule in profile_gpu_rules("slurm"):
        resources = profile["set-resources"][rule]
        assert resources["slurm_partition"] != defaults["slurm_partition"], f"{rule} is not sent to a GPU partition"
        assert resources["cpus_per_gpu"] >= 1
        assert resources["runtime"] > defaults["runtime"], f"{rule} gets no longer runtime than the default"


def test_workstation_profile_limits_gpu_jobs_to_the_cards(dry_workdir):
    profile = yaml.safe_load((PROFILES / "workstation" / "profile.yaml").read_text())
    assert profile["resources"]["gpu"] >= 1 and profile["cores"] == "all"
    plan = plan_resources(dry_workdir, "--profile", str(PROFILES / "workstation"))
    for rule, jobs in plan.items():
        gpu = {job.get("gpu") for job in jobs}
        assert gpu == ({"1"} if rule in profile_gpu_rules("workstation") else {None}), f"{rule}: gpu {gpu}"
    assert set(GPU_RULES) <= set(plan), f"the plan lacks GPU rules: {sorted(plan)}"


def test_slurm_profile_plan_puts_gpu_jobs_on_the_gpu_partition(dry_workdir, tmp_path):
    profile = local_slurm_profile(tmp_path / "slurm-profile", "cpu-test", "gpu-test")
    plan = plan_resources(dry_workdir, "--profile", str(profile))
    assert set(GPU_RULES) <= set(plan), f"the plan lacks GPU rules: {sorted(plan)}"
    for rule, jobs in plan.items():
        for job in jobs:
            if rule in profile_gpu_rules("slurm"):
                assert (job["slurm_partition"], job["gpu"]) == ("gpu-test", "1"), f"{rule}: {job}"
                assert int(job["runtime"]) > 60 and "cpus_per_gpu" in job, f"{rule}: {job}"
            else:
                assert job["slurm_partition"] == "cpu-test" and "gpu" not in job, f"{rule}: {job}"


def test_train_asks_for_train_gpus_gpus_under_both_profiles(tmp_path):
    workdir = tmp_path / "two-gpus"
    workdir.mkdir()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["sources"] = [{"path": str(REPO / "demo" / "recordings"), "speaker": "demo", "language": "en"}]
    config["until"] = "train"
    config["train"] = {**config.get("train", {}), "gpus": 2}
    write_config(workdir, config)
    slurm = local_slurm_profile(tmp_path / "slurm-profile", "cpu-test", "gpu-test")
    for args in ((), ("--profile", str(slurm))):
        (train_job,) = plan_resources(workdir, *args)["train"]
        assert train_job["gpu"] == "2", f"{args}: {train_job}"
        assert int(train_job["mem_mb"]) >= 16000 * (1 if args else 2), f"{args}: {train_job}"
