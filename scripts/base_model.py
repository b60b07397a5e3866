# Snakemake glue for rule base_model: read snakemake.*, call the package, nothing else.
from xttsflow.base_model import prepare_base_model
from xttsflow.logs import to_file

with to_file(snakemake.log[0], outputs=snakemake.output):
    prepare_base_model(
        snakemake.params.spec,
        out_dir=snakemake.output.model,
        accept_cpml=snakemake.params.accept_cpml,
    )
