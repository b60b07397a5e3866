# Snakemake glue for rule speaker_embed: read snakemake.*, call the package.
from xttsflow.logs import to_file
from xttsflow.speaker import embed_source
from xttsflow.status import run_source_stage

with to_file(snakemake.log[0], outputs=snakemake.output):
    run_source_stage(
        "speaker_embed", snakemake.wildcards.source,
        lambda: embed_source(
            snakemake.input.manifest,
            snakemake.input.segments,
            snakemake.output.embeddings,
            device=snakemake.params.device,
            threads=snakemake.threads,
            reference=snakemake.input.reference or None,  # [] where the source names none
        ),
        status=snakemake.output.status, files=[snakemake.output.embeddings],
        upstream=[snakemake.input.segment_status], policy=snakemake.config["on_source_error"],
    )
