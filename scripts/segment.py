# Snakemake glue for rule segment: read snakemake.*, call the package, nothing else.
from xttsflow.logs import to_file
from xttsflow.segment import SegmentConfig, segment_file

with to_file(snakemake.log[0], outputs=snakemake.output):
    segment_file(
        snakemake.input.audio,
        out_dir=snakemake.output.segments,
        manifest=snakemake.output.manifest,
        config=SegmentConfig(**snakemake.params.cfg),
        info=snakemake.input.info,
        source=snakemake.wildcards.source,
    )
