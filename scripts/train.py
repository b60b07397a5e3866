# Snakemake glue for rule train: read snakemake.*, call the package, nothing else.
from pathlib import Path

from xttsflow.logs import to_file
from xttsflow.train import train_job

with to_file(snakemake.log[0], outputs=snakemake.output):
    train_job(
        settings=snakemake.params.settings,
        base_dir=snakemake.input.base_model,
        dataset_dir=Path(snakemake.input.train).parent,
        export_model=snakemake.output.model,
        summary=snakemake.output.summary,
        log_dir=snakemake.params.log_dir,
        threads=snakemake.threads,
    )
