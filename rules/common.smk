# Source table and input functions shared by the rules. No rules here.
import json
import sys

# The workflow imports the xttsflow package from its own folder; rule scripts find it through the
# scripts/xttsflow link (Snakemake puts a script's folder on sys.path, in conda envs and on SLURM too).
sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import IncompleteCheckpointException, WorkflowError

from xttsflow.config import check_config
from xttsflow.errors import XttsflowError
from xttsflow.sources import source_table

try:
    check_config(config)
    SOURCES = source_table(config)
except XttsflowError as err:
    raise WorkflowError(str(err)) from None

LOCAL_IDS = sorted(s.id for s in SOURCES.values() if s.kind == "local")
URL_IDS = sorted(s.id for s in SOURCES.values() if s.kind == "url")
RUN = config["train"].get("run_name", "main")
# Transcription options that change a transcript; `workers` only changes speed, so it re-runs nothing.
TRANSCRIBE_RESULT_OPTIONS = {k: v for k, v in config["transcribe"].items() if k != "workers"}
STAGES = ["ingest", "segment", "transcribe", "dataset", "train", "evaluate"]
# The dataset review page (made by the review rule) is a target of every stage from the dataset on, so the
# report always holds it.
REVIEW_PAGE = "reports/dataset.html"


def url_entry_ids(url_id):
    """The media items a URL source expanded to (read from its checkpoint's output)."""
    with open(checkpoints.resolve_url.get(url_id=url_id).output.entries) as f:
        return [entry["id"] for entry in json.load(f)["entries"]]


def all_source_ids():
    """Every source id: local files, and each entry of each URL source (after its checkpoint)."""
    return LOCAL_IDS + [sid for url_id in URL_IDS for sid in url_entry_ids(url_id)]


def source_targets(pattern):
    """`pattern` over every known source id, plus the listing of each URL source not resolved yet: all
    URLs resolve at once, and one URL that fails to resolve holds back no other source (--keep-going)."""
    targets = expand(pattern, source=LOCAL_IDS)
    for url_id in URL_IDS:
        try:
            targets += expand(pattern, source=url_entry_ids(url_id))
        except IncompleteCheckpointException as pending:
            targets.append(pending.targetfile)  # flagged: this job is re-planned once the checkpoint ran
    return targets


def source_info(source_id):
    """The config entry (speaker, language, ...) a source id comes from; URL entries inherit their URL's."""
    if source_id in SOURCES:
        return SOURCES[source_id].as_dict()
    for url_id in URL_IDS:
        if source_id.startswith(f"{url_id}-"):
            return {**SOURCES[url_id].as_dict(), "id": source_id}
    raise WorkflowError(f"unknown source id {source_id!r}")


def stage_enabled(stage):
    return STAGES.index(stage) <= STAGES.index(config["until"])


def per_source(pattern):
    """An input function: `pattern` expanded over every source id."""
    return lambda wildcards: source_targets(pattern)


def final_outputs(wildcards):
    """The default target: outputs of the last stage that config `until` names."""
    targets = {
        "ingest": source_targets("raw/{source}.flac"),
        "segment": source_targets(["segments/{source}.json", "segments/{source}"]),
        "transcribe": source_targets("transcripts/{source}.json"),
        "dataset": ["dataset/stats.json"],
        "train": [f"checkpoints/{RUN}/export/model.pth"],
        "evaluate": [f"reports/{RUN}/metrics.json"],
    }
    return targets[config["until"]] + ([REVIEW_PAGE] if stage_enabled("dataset") else [])
