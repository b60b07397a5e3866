# Snakemake glue for rule ingest_local: one local recording -> raw FLAC + JSON record.
from xttsflow.ingest import ingest_local
from xttsflow.logs import to_file
from xttsflow.status import run_source_stage

with to_file(snakemake.log[0], outputs=snakemake.output):
    run_source_stage(
        "ingest", snakemake.wildcards.source,
        lambda: ingest_local(snakemake.params.source, flac=snakemake.output.audio, info=snakemake.output.info),
        status=snakemake.output.status, files=[snakemake.output.audio, snakemake.output.info],
        policy=snakemake.config["on_source_error"],
    )
