"""The workflow's layout: stage = rule file = env = docs page, one report category per stage, the paths
contract (xttsflow.paths) that the rules and the package share, and running in another working folder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, planned_jobs, write_config
from test_envs import load_rules

from xttsflow import paths

# Runs in a subprocess (the Snakemake API changes the working directory of the process that loads it):
# every output a rule marks for the report, with its category.
REPORT_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import is_flagged
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

with SnakemakeApi(OutputSettings()) as api:
    workflow_api = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(),
                                storage_settings=StorageSettings(), snakefile=Path(sys.argv[1]),
                                workdir=Path(sys.argv[2]))
    found = [{"rule": rule.name, "snakefile": str(rule.snakefile), "output": str(f),
              "category": f.flags["report"].category}
             for rule in workflow_api._workflow.rules for f in rule.output if is_flagged(f, "report")]
print("REPORT-JSON " + json.dumps(found))
"""


def test_each_stage_is_one_rule_file_one_env_and_one_docs_page():
    rules = [r for r in load_rules() if not r["norun"]]
    problems = []
    for rule in rules:
        stage = Path(rule["snakefile"]).stem
        env = Path(rule["conda"]).stem if rule["conda"] else None
        if stage not in paths.STAGES:
            problems.append(f"rule {rule['name']} is in {rule['snakefile']}, which is no stage's rule file")
        if env != stage:
            problems.append(f"rule {rule['name']} (rules/{stage}.smk) runs in envs/{env}.yaml, not envs/{stage}.yaml")
    assert not problems, "\n".join(problems)
    assert {Path(r["snakefile"]).stem for r in rules} == set(paths.STAGES)
    assert sorted(p.stem for p in (REPO / "rules").glob("*.smk")) == sorted([*paths.STAGES, "common"])
    assert sorted(p.stem for p in (REPO / "envs").glob("*.yaml")) == sorted(paths.STAGES)
    for number, stage in enumerate(paths.STAGES, 1):
        title = (REPO / "docs" / f"{stage}.md").read_text().splitlines()[0]
        assert title.startswith(f"# Stage {number} — {stage}"), f"docs/{stage}.md: {title!r}"
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    assert schema["properties"]["until"]["enum"] == list(paths.STAGES)


def test_speaker_embed_is_configured_under_its_own_name_and_feeds_the_dataset():
    (rule,) = [r for r in load_rules() if r["name"] == "speaker_embed"]
    assert Path(rule["snakefile"]).name == "dataset.smk"
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["properties"]
    assert "speaker_embed" in schema and "speaker_check" not in schema


def test_report_categories_are_the_numbered_stages():
    proc = subprocess.run([sys.executable, "-c", REPORT_SCRIPT, str(REPO / "Snakefile"), str(REPO)],
                          capture_output=True, text=True, timeout=120)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("REPORT-JSON ")), None)
    assert line, proc.stdout + proc.stderr
    found = json.loads(line.removeprefix("REPORT-JSON "))
    categories = {re.sub(r"\{(\w+),[^}]*\}", r"{\1}", f["output"]): f["category"] for f in found}  # no constraints
    assert categories == {
        "dataset/durations.png": "4. Dataset",
        "reports/dataset.html": "4. Dataset",
        "reports/{run}/loss_curves.png": "5. Train",
        "reports/{run}/metrics.csv": "6. Evaluate",
        "reports/{run}/samples.html": "6. Evaluate",
    }
    assert set(categories.values()) <= {paths.report_category(s) for s in paths.STAGES}


def test_paths_fill_the_rules_patterns():
    """The package's functions give the paths the rules write (literal here: this is the contract)."""
    assert paths.export_model("main") == Path("checkpoints/main/export/model.pth")
    assert paths.export_dir("main", "/w") == Path("/w/checkpoints/main/export")
    assert paths.train_summary("r1") == Path("checkpoints/r1/train_summary.json")
    assert paths.base_model("/w") == Path("/w/models/base")
    assert paths.dataset_wavs() == Path("dataset/wavs")
    assert paths.fill(paths.SCORES, run="main", model="real") == Path("samples/main/real.scores.json")
    assert paths.log("segment/{source}") == "logs/segment/{source}.log"
    assert paths.DATASET_STATS == "dataset/stats.json" and paths.TENSORBOARD.format(run="x") == "runs/x"


def test_references_by_run_finds_each_runs_references(tmp_path):
    for run in ("main", "big"):
        (tmp_path / "samples" / run).mkdir(parents=True)
        (tmp_path / "samples" / run / "references.json").write_text("{}")
    (tmp_path / "samples" / "main" / "base.json").write_text("{}")
    assert paths.references_by_run(tmp_path) == {
        "big": tmp_path / "samples/big/references.json", "main": tmp_path / "samples/main/references.json"}


# ---------- another working folder, the way the README says ----------


def _demo_config(**changes) -> dict:
    """README: a copy of the workflow's config/config.yaml with your sources listed (here: the demo's)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["sources"] = [{"path": str(REPO / "demo" / "recordings"), "speaker": "demo", "language": "en"}]
    return {**config, **changes}


def _dry_run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--dry-run", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _job_stats(proc: subprocess.CompletedProcess) -> dict[str, int]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def test_another_working_folder_reads_its_own_config(tmp_path):
    voice = tmp_path / "voices" / "ana"
    write_config(voice, _demo_config())
    demo_plan = planned_jobs(voice)  # conftest's runner: --snakefile REPO/Snakefile --directory voice
    assert demo_plan["ingest_local"] == 3 and demo_plan["evaluate"] == 1, demo_plan

    # README: `snakemake --snakefile $WF/Snakefile --directory ~/voices/ana`, from any folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plan = _job_stats(_dry_run(elsewhere, "--snakefile", str(REPO / "Snakefile"), "--directory", str(voice)))
    assert plan == demo_plan
    # README: `cd ~/voices/ana && snakemake -s $WF/Snakefile`
    assert _job_stats(_dry_run(voice, "-s", str(REPO / "Snakefile"))) == demo_plan
    assert not (elsewhere / ".snakemake").exists() and (voice / ".snakemake").is_dir()

    # README: `--configfile FILE` instead of config/config.yaml
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "ana.yaml").write_text(yaml.safe_dump(_demo_config()))
    assert _job_stats(_dry_run(other, "-s", str(REPO / "Snakefile"), "--configfile", str(tmp_path / "ana.yaml"))) \
        == demo_plan


def test_a_folder_without_config_says_how_to_make_one(tmp_path):
    proc = _dry_run(tmp_path, "-s", str(REPO / "Snakefile"))
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode != 0
    assert f"no config/config.yaml in the working folder {tmp_path}" in out
    assert f"cp {REPO}/config/config.yaml config/" in out and "--configfile FILE" in out
    assert len(out.splitlines()) <= 5, out


@pytest.mark.parametrize("target", ["dataset", "train"])
def test_until_targets_come_from_the_paths_module(tmp_path, target):
    """`until: dataset` plans up to dataset/stats.json, `until: train` up to the run's export."""
    write_config(tmp_path, _demo_config(until=target))
    plan = planned_jobs(tmp_path)
    assert plan[target] == 1 and "references" not in plan and ("train" in plan) == (target == "train"), plan
