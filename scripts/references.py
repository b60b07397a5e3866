# Snakemake glue for rule references: read snakemake.*, call the package, nothing else.
import os

from xttsflow.evaluate import EvaluateConfig, choose_references
from xttsflow.logs import to_file

with to_file(snakemake.log[0], outputs=snakemake.output):
    choose_references(
        os.path.dirname(snakemake.input.val),
        transcripts=snakemake.input.transcripts,
        cfg=EvaluateConfig(**snakemake.params.cfg),
        out=snakemake.output.references,
    )
