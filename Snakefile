# xttsflow: recordings -> segments -> transcripts -> LJSpeech dataset -> XTTS-v2 LoRA fine-tune -> samples.
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

# Each working folder has its own config/config.yaml: `--directory DIR` (or running in DIR) reads
# DIR/config/config.yaml; `--configfile FILE` is read on top of it, or alone where there is none
# (README: "Running in another folder").
if not os.path.exists("config/config.yaml") and not workflow.overwrite_configfiles:
    raise WorkflowError(
        f"no config/config.yaml in the working folder {os.getcwd()} — start from the workflow's: "
        f"mkdir -p config && cp {workflow.basedir}/config/config.yaml config/ (then list your sources), "
        "or pass --configfile FILE"
    )


configfile: "config/config.yaml"


# Checks every option against its model (xttsflow/options.py; config/schema.yaml documents them) and fills
# in the defaults: a bad key or value stops the run there, in a few lines that name it.
include: "rules/common.smk"


wildcard_constraints:
    source=r"[a-z0-9][a-z0-9-]*",
    url_id=r"url-[0-9a-f]{8}",


include: "rules/ingest.smk"
include: "rules/segment.smk"
include: "rules/transcribe.smk"
include: "rules/dataset.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"


# Sources that failed (on_source_error: skip) are named at the end, whether the run succeeded or not.
onsuccess:
    print_failed_sources()


onerror:
    print_failed_sources()


rule all:
    default_target: True
    input:
        final_outputs,
