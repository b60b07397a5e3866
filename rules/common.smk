# Source table and input functions shared by the rules. No rules here.
import json
import os
import sys

# Jobs (local, conda or SLURM) import the xttsflow package from the workflow's own folder.
sys.path.insert(0, workflow.basedir)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))

from snakemake.exceptions import WorkflowError

from xttsflow.errors import XttsflowError
from xttsflow.sources import URL_PREFIX, source_table

try:
    SOURCES = source_table(config)
except XttsflowError as err:
    raise WorkflowError(str(err)) from None

LOCAL_IDS = sorted(s.id for s in SOURCES.values() if s.kind == "local")
URL_IDS = sorted(s.id for s in SOURCES.values() if s.kind == "url")
RUN = config["train"].get("run_name", "main")
STAGES = ["ingest", "segment", "transcribe", "dataset", "train", "evaluate"]


wildcard_constraints:
    source=r"[a-z0-9][a-z0-9-]*",
    url_id=URL_PREFIX + r"[0-9a-f]{8}",


def url_entry_ids(url_id):
    """The media items a URL source expanded to (read from its checkpoint's output)."""
    with open(checkpoints.resolve_url.get(url_id=url_id).output.entries) as f:
        return [entry["id"] for entry in json.load(f)["entries"]]


def all_source_ids():
    """Every source id: local files, and each entry of each URL source (after its checkpoint)."""
    return LOCAL_IDS + [sid for url_id in URL_IDS for sid in url_entry_ids(url_id)]


def source_info(source_id):
    """The config entry (speaker, language, ...) a source id comes from; URL entries inherit their URL's."""
    if source_id in SOURCES:
        return SOURCES[source_id].as_dict()
    for url_id in URL_IDS:
        if source_id.startswith(url_id + "-"):
            return {**SOURCES[url_id].as_dict(), "id": source_id}
    raise WorkflowError(f"unknown source id {source_id!r}")


def stage_enabled(stage):
    return STAGES.index(stage) <= STAGES.index(config["until"])


def per_source(pattern):
    """An input function: `pattern` expanded over every source id."""
    return lambda wildcards: expand(pattern, source=all_source_ids())


def final_outputs(wildcards):
    """What `rule all` builds: the outputs of the last stage that config `until` names."""
    targets = {
        "ingest": expand("raw/{source}.flac", source=all_source_ids()),
        "segment": expand("segments/{source}.json", source=all_source_ids()),
        "transcribe": expand("transcripts/{source}.json", source=all_source_ids()),
        "dataset": ["dataset/stats.json"],
        "train": [f"checkpoints/{RUN}/export/model.pth"],
        "evaluate": [f"reports/{RUN}/metrics.json"],
    }
    return targets[config["until"]]
