# Snakemake glue for rule transcribe: read snakemake.*, call the package.
from xttsflow.logs import to_file
from xttsflow.status import run_source_stage
from xttsflow.transcribe import TranscribeConfig, transcribe_source

with to_file(snakemake.log[0], outputs=snakemake.output):
    run_source_stage(
        "transcribe", snakemake.wildcards.source,
        lambda: transcribe_source(
            snakemake.input.manifest,
            snakemake.input.segments,
            snakemake.output.transcript,
            # `workers` is left out of the rule's params (it changes speed, never a transcript): read it here.
            TranscribeConfig(**snakemake.params.cfg, workers=snakemake.config["transcribe"]["workers"]),
            language=snakemake.params.language,
            threads=snakemake.threads,
        ),
        status=snakemake.output.status, files=[snakemake.output.transcript],
        upstream=[snakemake.input.segment_status], policy=snakemake.config["on_source_error"],
    )
