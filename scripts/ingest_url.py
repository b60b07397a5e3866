# Snakemake glue for rule ingest_url: one URL entry -> raw FLAC + JSON record (yt-dlp, download archive).
from xttsflow.download import ingest_url, read_entry
from xttsflow.ingest import IngestConfig
from xttsflow.logs import to_file

with to_file(snakemake.log[0], outputs=snakemake.output):
    ingest_url(
        snakemake.params.source,
        read_entry(snakemake.input.entries, snakemake.wildcards.source),
        flac=snakemake.output.audio,
        info=snakemake.output.info,
        cfg=IngestConfig(**snakemake.config["ingest"]),
    )
