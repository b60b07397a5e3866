# ---------- train: base model + dataset -> LoRA fine-tune of XTTS-v2's GPT -> merged export (docs/train.md) ----------
from xttsflow.settings import base_model_kind, load_settings

# The resolved settings (config train: section < .env < TRAIN_* env vars, the run name on top); as params
# they make any change of a training setting re-run training, and nothing else does.
try:
    TRAIN = load_settings(config["train"], run_name=RUN)
except XttsflowError as err:
    raise WorkflowError(str(err)) from None
BASE_SPEC = TRAIN.base_model_spec
BASE_DIR = BASE_SPEC if base_model_kind(BASE_SPEC) == "folder" else paths.BASE_MODEL


if BASE_DIR == paths.BASE_MODEL:  # builtin:tiny or a coqui-tts model name; a local folder needs no rule

    rule base_model:
        output:
            model=directory(paths.BASE_MODEL),  # XTTS layout: model.pth, config.json, vocab.json, dvae.pth, ...
        log:
            paths.log("base_model"),
        conda:
            "../envs/train.yaml"
        threads: 1
        params:
            spec=BASE_SPEC,
            accept_cpml=TRAIN.accept_cpml,
        script:
            "../scripts/base_model.py"


rule train:
    input:
        base_model=BASE_DIR,
        train=paths.DATASET_TRAIN,
        val=paths.DATASET_VAL,
        stats=paths.DATASET_STATS,
    output:
        model=paths.EXPORT_MODEL.format(run=RUN),
        summary=paths.TRAIN_SUMMARY.format(run=RUN),
    log:
        paths.log(f"train/{RUN}"),
    benchmark:
        paths.benchmark(f"train/{RUN}")
    conda:
        "../envs/train.yaml"
    # per process (train.gpus of them): the tiny model's layers are too small to split over threads
    threads: (1 if BASE_SPEC == "builtin:tiny" else 4) * TRAIN.gpus
    resources:
        gpu=TRAIN.gpus,  # data-parallel: one process per GPU (docs/cluster.md)
        mem_mb=16000 * TRAIN.gpus,
        runtime=720,
    params:
        settings=TRAIN.snapshot(),
        log_dir=f"runs/{RUN}",
    script:
        "../scripts/train.py"
