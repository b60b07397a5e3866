# Snakemake glue for rule dataset: read snakemake.*, call the package, nothing else.
from pathlib import Path

from xttsflow.dataset import DatasetConfig, build_dataset, failed_sources, sources_from_paths
from xttsflow.logs import to_file

with to_file(snakemake.log[0], outputs=snakemake.output):
    build_dataset(
        sources_from_paths(snakemake.input.transcripts, snakemake.input.manifests, snakemake.input.embeddings,
                           snakemake.input.quality),
        out_dir=Path(snakemake.output.stats).parent,
        config=DatasetConfig(**snakemake.params.cfg),
        failed=failed_sources(snakemake.input.statuses),
    )
