# Snakemake glue for rule quality: read snakemake.*, call the package.
from xttsflow.logs import to_file
from xttsflow.quality import score_source
from xttsflow.status import run_source_stage

with to_file(snakemake.log[0], outputs=snakemake.output):
    run_source_stage(
        "quality", snakemake.wildcards.source,
        lambda: score_source(snakemake.input.manifest, snakemake.input.segments, snakemake.output.scores,
                             threads=snakemake.threads),
        status=snakemake.output.status, files=[snakemake.output.scores],
        upstream=[snakemake.input.segment_status], policy=snakemake.config["on_source_error"],
    )
