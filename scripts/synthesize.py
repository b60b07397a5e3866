# Snakemake glue for rule synthesize: read snakemake.*, call the package, nothing else.
from xttsflow.logs import to_file
from xttsflow.synthesize import EvaluateConfig, synthesize_samples

with to_file(snakemake.log[0], outputs=snakemake.output):
    synthesize_samples(
        snakemake.input.model,
        references=snakemake.input.references,
        cfg=EvaluateConfig(**snakemake.params.cfg),
        out_dir=snakemake.output.samples,
        manifest=snakemake.output.manifest,
        model_name=snakemake.wildcards.model,
        threads=snakemake.threads,
    )
