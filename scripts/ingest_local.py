# Snakemake glue for rule ingest_local: one local recording -> raw FLAC + JSON record.
from xttsflow.ingest import ingest_local
from xttsflow.logs import to_file

with to_file(snakemake.log[0], outputs=snakemake.output):
    ingest_local(snakemake.params.source, flac=snakemake.output.audio, info=snakemake.output.info)
