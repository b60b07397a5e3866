# Snakemake glue for rule training_curves: read snakemake.*, call the package, nothing else.
from xttsflow.logs import to_file
from xttsflow.report import training_curves

with to_file(snakemake.log[0], outputs=snakemake.output):
    training_curves(
        snakemake.params.log_dir,
        png=snakemake.output.plot,
        summary=snakemake.output.summary,
        train_summary=snakemake.input.summary,
    )
