# Source table and input functions shared by the rules. No rules here.
import json
import sys

# The workflow imports the xttsflow package from its own folder; rule scripts find it through the
# scripts/xttsflow link (Snakemake puts a script's folder on sys.path, in conda envs and on SLURM too).
sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import IncompleteCheckpointException, WorkflowError

from xttsflow import paths
from xttsflow.config import validate_config
from xttsflow.errors import XttsflowError
from xttsflow.runlock import stale_lock_note
from xttsflow.sources import source_table
from xttsflow.status import retry_token

if "--unlock" not in sys.argv and (note := stale_lock_note()):
    print(note, file=sys.stderr)

try:
    validate_config(config)
    SOURCES = source_table(config)
except XttsflowError as err:
    raise WorkflowError(str(err)) from None

LOCAL_IDS = sorted(s.id for s in SOURCES.values() if s.kind == "local")
URL_IDS = sorted(s.id for s in SOURCES.values() if s.kind == "url")
RUN = config["train"].get("run_name", "main")
# Transcription options that change a transcript; `workers` only changes speed, so it re-runs nothing.
# The dataset's audio-quality screen runs (rule quality) only where one of its thresholds is set.
QUALITY_SCREEN = any(config["dataset"].get(k) is not None for k in ("min_dnsmos_ovrl", "min_dnsmos_bak", "min_snr_db"))
TRANSCRIBE_RESULT_OPTIONS = {k: v for k, v in config["transcribe"].items() if k != "workers"}


def url_entry_ids(url_id):
    """The media items a URL source expanded to (read from its checkpoint's output)."""
    with open(checkpoints.resolve_url.get(url_id=url_id).output.entries) as f:
        # a URL that failed to resolve (on_source_error: skip) lists none; the dataset reports it
        return [entry["id"] for entry in json.load(f).get("entries", [])]


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


def source_reference(wildcards):
    """A source's `reference:` clip (an input of its speaker_embed job), or none; URL entries inherit their URL's."""
    source_id = wildcards.source
    owner = SOURCES.get(source_id) or next((SOURCES[u] for u in URL_IDS if source_id.startswith(f"{u}-")), None)
    return owner.reference if owner is not None and owner.reference else []


def retry(stage):
    """A URL rule's `retry` param: it changes after the job failed in its own stage, so the next run re-runs
    that job (Snakemake's params trigger) and no other: the site may be back (xttsflow/status.py)."""
    pattern = paths.URL_STATUS if stage == "resolve_url" else paths.status(stage)
    return lambda wildcards: retry_token(pattern.format(**wildcards))


def per_source(pattern):
    """An input function: `pattern` expanded over every source id."""
    return lambda wildcards: source_targets(pattern)


def final_outputs(wildcards):
    """The default target: outputs of the last stage that config `until` names."""
    targets = {
        "ingest": source_targets(paths.RAW_AUDIO),
        "segment": source_targets([paths.SEGMENTS_MANIFEST, paths.SEGMENTS]),
        "transcribe": source_targets(paths.TRANSCRIPT),
        "dataset": [paths.DATASET_STATS],
        "train": [paths.EXPORT_MODEL.format(run=RUN)],
        "evaluate": [paths.METRICS.format(run=RUN)],
    }
    # The dataset review page (rule review) goes with every stage from the dataset on, so the report has it.
    reviewed = paths.STAGES.index(config["until"]) >= paths.STAGES.index("dataset")
    return targets[config["until"]] + ([paths.REVIEW_PAGE] if reviewed else [])


def print_failed_sources():
    """After a run: one line per source that failed (on_source_error: skip), with its stage and reason."""
    from xttsflow.status import failure_lines

    for line in failure_lines("."):
        print(line, file=sys.stderr)
