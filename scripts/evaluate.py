# Snakemake glue for rule evaluate: read snakemake.*, call the package, nothing else.
from xttsflow.evaluate import MODELS, evaluate_run
from xttsflow.logs import to_file

with to_file(snakemake.log[0], outputs=snakemake.output):
    evaluate_run(
        snakemake.wildcards.run,
        scores=dict(zip(MODELS, snakemake.input.scores, strict=True)),
        manifests=dict(zip(MODELS[:2], snakemake.input.manifests, strict=True)),
        references=snakemake.input.references,
        training=snakemake.input.training,
        dataset_stats=snakemake.input.stats,
        out=dict(snakemake.output.items()),
    )
