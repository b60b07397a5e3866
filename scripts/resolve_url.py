# Snakemake glue for checkpoint resolve_url: a URL -> the list of its media entries.
from xttsflow.download import resolve_url
from xttsflow.ingest import IngestConfig
from xttsflow.logs import to_file
from xttsflow.status import run_source_stage

with to_file(snakemake.log[0], outputs=snakemake.output):
    run_source_stage(
        "ingest", snakemake.wildcards.url_id,
        lambda: resolve_url(snakemake.params.url, out=snakemake.output.entries,
                            cfg=IngestConfig(**snakemake.config["ingest"])),
        status=snakemake.output.status, files=[snakemake.output.entries],
        policy=snakemake.config["on_source_error"],
    )
