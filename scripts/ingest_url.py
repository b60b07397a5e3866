# Snakemake glue for rule ingest_url: one URL entry -> raw FLAC + JSON record (yt-dlp, download archive).
from xttsflow.download import ingest_url, read_entry
from xttsflow.ingest import IngestConfig
from xttsflow.logs import to_file
from xttsflow.status import run_source_stage

with to_file(snakemake.log[0], outputs=snakemake.output):
    run_source_stage(
        "ingest", snakemake.wildcards.source,
        lambda: ingest_url(
            snakemake.params.source,
            read_entry(snakemake.input.entries, snakemake.wildcards.source),
            flac=snakemake.output.audio,
            info=snakemake.output.info,
            cfg=IngestConfig(**snakemake.config["ingest"]),
        ),
        status=snakemake.output.status, files=[snakemake.output.audio, snakemake.output.info],
        policy=snakemake.config["on_source_error"],
    )
