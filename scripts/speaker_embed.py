# Snakemake glue for rule speaker_embed: read snakemake.*, call the package.
from xttsflow.logs import to_file
from xttsflow.speaker import embed_source

with to_file(snakemake.log[0], outputs=snakemake.output):
    embed_source(
        snakemake.input.manifest,
        snakemake.input.segments,
        snakemake.output.embeddings,
        device=snakemake.params.device,
        threads=snakemake.threads,
    )
