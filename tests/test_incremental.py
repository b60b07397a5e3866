"""Recompute only what is stale (issue 6 (a)-(e)), read from the dry-run plan after one complete run.

One small complete run (one ~11 s espeak recording cut into four clips, 2 LoRA steps of the tiny XTTS,
one short sentence synthesized per model) is shared: each test edits its own copy of it (mtimes and
.snakemake metadata kept).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, planned_jobs, snakemake, write_config

from xttsflow.audio import write_wav
from xttsflow.sources import local_source_id

pytestmark = pytest.mark.slow

TEXTS = {
    "take1": ["The lighthouse keeper counted the ships.", "A storm came over the grey sea.",
              "By morning the harbour was calm.", "The boats went out again at noon."],
    "take2": ["She painted the old door bright green.", "Neighbours stopped to look at it.",
              "Children said it looked like a frog.", "She laughed and painted it blue."],
}
# One job per source in these rules; every other rule aggregates all sources (or a run).
PER_SOURCE_RULES = {"ingest_local", "segment", "transcribe", "speaker_embed"}
# Rules that read the trained model (and so re-run after any training change).
AFTER_TRAINING = {"train", "synthesize", "score", "training_curves", "evaluate", "all"}


def source_entry(name: str) -> dict:
    return {"path": f"recordings/{name}.wav", "speaker": "lea", "language": "en"}


def source_id(name: str) -> str:
    return local_source_id(f"recordings/{name}.wav")


def add_recording(workdir: Path, name: str, make_speech) -> None:
    speech = make_speech(TEXTS[name], [0.9, 0.9, 0.9])
    write_wav(workdir / "recordings" / f"{name}.wav", speech.samples, speech.sample_rate)


def read_config(workdir: Path) -> dict:
    return yaml.safe_load((workdir / "config" / "config.yaml").read_text())


def plan_text(workdir: Path, *args: str) -> str:
    proc = snakemake(workdir, "--dry-run", *args)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory, make_speech) -> Path:
    workdir = tmp_path_factory.mktemp("complete")
    add_recording(workdir, "take1", make_speech)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update({
        "sources": [source_entry("take1")],
        "until": "evaluate",
        # Sentence-sized segments, so that each source gives a few clips and the dataset a val split.
        "segment": {"min_duration": 2.0, "max_duration": 8.0},
        "dataset": {"min_duration": 1.0},
        "evaluate": {"num_sentences": 1, "num_references": 1, "max_new_tokens": 20},
    })
    config["train"].update({"max_steps": 2, "batch_size": 2})
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture
def copy_of(complete_run, tmp_path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(complete_run, work, symlinks=True)  # copy2 keeps the mtimes Snakemake compares
    return work


def test_a_second_run_plans_nothing(complete_run):
    assert (complete_run / "reports" / "main" / "metrics.json").is_file()
    assert planned_jobs(complete_run) == {}


def test_b_adding_a_source_plans_only_its_jobs_and_the_aggregates(copy_of, make_speech):
    add_recording(copy_of, "take2", make_speech)
    config = read_config(copy_of)
    config["sources"].append(source_entry("take2"))
    write_config(copy_of, config)
    plan = planned_jobs(copy_of)
    assert {rule: plan.get(rule) for rule in PER_SOURCE_RULES} == dict.fromkeys(PER_SOURCE_RULES, 1), plan
    wildcards = set(re.findall(r"wildcards: source=(\S+)", plan_text(copy_of)))
    assert wildcards == {source_id("take2")}, "the existing source would be re-processed"
    # Everything downstream of the dataset re-runs once; the base model does not.
    assert {"dataset", "train", "references", "synthesize", "evaluate"} <= set(plan) and "base_model" not in plan
    assert all(count == 1 for rule, count in plan.items() if rule not in {"synthesize", "score"}), plan


def test_c_changing_a_transcription_setting_reruns_transcription_and_downstream(copy_of):
    config = read_config(copy_of)
    config["transcribe"]["beam_size"] = 4
    write_config(copy_of, config)
    plan = planned_jobs(copy_of)
    assert plan["transcribe"] == 1 and plan["dataset"] == 1 and plan["train"] == 1, plan
    assert not {"ingest_local", "segment", "speaker_embed", "base_model"} & set(plan), plan


def test_c_changing_a_speed_only_setting_reruns_nothing(copy_of):
    """transcribe.workers changes speed, not results: no job is stale."""
    config = read_config(copy_of)
    config["transcribe"]["workers"] = 2
    write_config(copy_of, config)
    assert planned_jobs(copy_of) == {}


def test_d_changing_a_training_setting_reruns_only_training_and_what_reads_the_model(copy_of):
    config = read_config(copy_of)
    config["train"]["learning_rate"] = 5e-5
    write_config(copy_of, config)
    plan = planned_jobs(copy_of)
    assert set(plan) == AFTER_TRAINING, plan
    assert plan["train"] == 1 and plan["synthesize"] == 1 and plan["score"] == 1, "only the fine-tuned model's"


def test_d_a_train_env_var_counts_as_a_training_setting(complete_run):
    env = {**os.environ, "TRAIN_LORA_RANK": "4"}
    proc = subprocess.run([*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(complete_run),
                           "--dry-run"], cwd=complete_run, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    stats = proc.stdout.split("Job stats:", 1)[1]
    assert re.search(r"^train\s+1$", stats, re.MULTILINE) and not re.search(r"^dataset\s", stats, re.MULTILINE)


def test_e_a_deleted_segment_manifest_is_recreated_without_reingesting(copy_of, complete_run):
    """Snakemake rebuilds a deleted intermediate when it is asked for (everything downstream is still up
    to date, so a plain run leaves it be): the segment job alone runs; the raw FLAC is not fetched again."""
    sid = source_id("take1")
    manifest = copy_of / "segments" / f"{sid}.json"
    raw = copy_of / "raw" / f"{sid}.flac"
    raw_mtime = raw.stat().st_mtime_ns
    manifest.unlink()
    assert planned_jobs(copy_of, f"segments/{sid}.json") == {"segment": 1}
    snakemake(copy_of, "--cores", "2", f"segments/{sid}.json")
    assert raw.stat().st_mtime_ns == raw_mtime, "the source was ingested again"
    assert json.loads(manifest.read_text())["segments"] == json.loads(
        (complete_run / "segments" / f"{sid}.json").read_text())["segments"]
    # The re-made segments are newer than the transcript: the next run redoes what reads them.
    plan = planned_jobs(copy_of)
    assert plan["transcribe"] == 1 and "ingest_local" not in plan and "segment" not in plan, plan


def test_killed_mid_job_leaves_nothing_half_written_and_the_next_run_redoes_it(copy_of, complete_run):
    sid = source_id("take1")
    target = f"transcripts/{sid}.json"
    (copy_of / target).unlink()
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(copy_of), "--cores", "1", target]
    proc = subprocess.Popen(cmd, cwd=copy_of, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        # Wait for the transcribe job to start and load its model, then cut the power: SIGKILL to the whole
        # process group, so that no handler runs, not even Snakemake's own.
        started = any(re.match(r"(local)?rule transcribe:", line) for line in proc.stdout)
        assert started, "the transcribe job never started"
        time.sleep(1.5)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()

    assert not (copy_of / target).exists(), "a killed job left a (half-written) transcript"
    markers = (copy_of / ".snakemake" / "incomplete").iterdir()
    assert target in {base64.b64decode(m.name).decode() for m in markers}, "Snakemake did not mark it incomplete"
    assert planned_jobs(copy_of, target) == {"transcribe": 1}
    # The killed Snakemake could not release its lock: the next run says how to, and then redoes the job.
    refused = snakemake(copy_of, "--cores", "2", target, check=False)
    assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr
    snakemake(copy_of, "--unlock")
    snakemake(copy_of, "--cores", "2", target)
    redone = json.loads((copy_of / target).read_text())
    original = json.loads((complete_run / target).read_text())
    assert [s["text"] for s in redone["segments"]] == [s["text"] for s in original["segments"]]
    assert not list((copy_of / ".snakemake" / "incomplete").iterdir()), "the incomplete marker stayed"
