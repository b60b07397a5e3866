# Snakemake glue for rules score and score_real: read snakemake.*, call the package, nothing else.
from xttsflow.evaluate import score_model
from xttsflow.logs import to_file
from xttsflow.transcribe import TranscribeConfig

with to_file(snakemake.log[0], outputs=snakemake.output):
    score_model(
        snakemake.wildcards.get("model", "real"),
        references=snakemake.input.references,
        manifest=snakemake.input.get("manifest"),
        transcribe_cfg=TranscribeConfig(**snakemake.params.cfg),
        out=snakemake.output.scores,
        threads=snakemake.threads,
    )
