# Snakemake glue for rule segment: read snakemake.*, call the package, nothing else.
from xttsflow.logs import to_file
from xttsflow.segment import SegmentConfig, segment_file
from xttsflow.status import run_source_stage

with to_file(snakemake.log[0], outputs=snakemake.output):
    run_source_stage(
        "segment", snakemake.wildcards.source,
        lambda: segment_file(
            snakemake.input.audio,
            out_dir=snakemake.output.segments,
            manifest=snakemake.output.manifest,
            config=SegmentConfig(**snakemake.params.cfg),
            info=snakemake.input.info,
            source=snakemake.wildcards.source,
        ),
        status=snakemake.output.status, files=[snakemake.output.manifest], dirs=[snakemake.output.segments],
        upstream=[snakemake.input.ingest_status, *snakemake.input.upstream_status],
        policy=snakemake.config["on_source_error"],
    )
