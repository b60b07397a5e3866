# xttsflow: recordings -> segments -> transcripts -> LJSpeech dataset -> XTTS-v2 LoRA fine-tune -> samples.
from snakemake.utils import min_version

min_version("9.0")


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
include: "rules/synthesize.smk"


rule all:
    default_target: True
    input:
        final_outputs,
