# Snakemake glue for rule train: read snakemake.*, call the package, nothing else.
from xttsflow.logs import to_file
from xttsflow.train import train_job

with to_file(snakemake.log[0]):
    train_job(
        settings=snakemake.params.settings,
        base_dir=snakemake.input.base_model,
        export_model=snakemake.output.model,
        summary=snakemake.output.summary,
        threads=snakemake.threads,
    )
