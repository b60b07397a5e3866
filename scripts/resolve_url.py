# Snakemake glue for checkpoint resolve_url: a URL -> the list of its media entries.
from xttsflow.download import resolve_url
from xttsflow.ingest import IngestConfig
from xttsflow.logs import to_file

with to_file(snakemake.log[0], outputs=snakemake.output):
    resolve_url(snakemake.params.url, out=snakemake.output.entries, cfg=IngestConfig(**snakemake.config["ingest"]))
