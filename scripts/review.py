# Snakemake glue for rule review: read snakemake.*, call the package, nothing else.
from xttsflow.logs import to_file
from xttsflow.review import build_review

with to_file(snakemake.log[0], outputs=snakemake.output):
    build_review(snakemake.input.clips, snakemake.input.stats, snakemake.output.page, threads=snakemake.threads)
