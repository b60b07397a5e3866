# Snakemake glue for rule denoise: read snakemake.*, call the package, nothing else.
from xttsflow.denoise import denoise_file
from xttsflow.logs import to_file
from xttsflow.status import run_source_stage

with to_file(snakemake.log[0], outputs=snakemake.output):
    run_source_stage(
        "denoise", snakemake.wildcards.source,
        lambda: denoise_file(snakemake.input.audio, snakemake.output.audio, source=snakemake.wildcards.source),
        status=snakemake.output.status, files=[snakemake.output.audio],
        upstream=[snakemake.input.ingest_status], policy=snakemake.config["on_source_error"],
    )
