# ---------- evaluate: references -> samples (base, fine-tuned) -> scores -> metrics + report (docs/evaluate.md) ----------


report: "../report/workflow.rst"


wildcard_constraints:
    run=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    model=r"base|finetuned|real",


rule references:
    input:
        val=paths.DATASET_VAL,
        wavs=paths.DATASET_WAVS,
        transcripts=per_source(paths.TRANSCRIPT),
    output:
        references=paths.REFERENCES,
    log:
        paths.log("evaluate/{run}/references"),
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    params:
        cfg=config["evaluate"],
    script:
        "../scripts/references.py"


rule synthesize:
    input:
        # the base model's folder (BASE_DIR, rules/train.smk) or the run's merged export
        model=lambda wildcards: BASE_DIR if wildcards.model == "base" else paths.EXPORT_MODEL.format(run=wildcards.run),
        references=paths.REFERENCES,
    output:
        samples=directory(paths.SAMPLES),
        manifest=paths.SAMPLES_MANIFEST,
    wildcard_constraints:
        model=r"base|finetuned",
    log:
        paths.log("evaluate/{run}/synthesize_{model}"),
    benchmark:
        paths.benchmark("evaluate/{run}/synthesize_{model}")
    conda:
        "../envs/evaluate.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=6000,
    params:
        cfg=config["evaluate"],
    script:
        "../scripts/synthesize.py"


rule score:
    input:
        references=paths.REFERENCES,
        manifest=paths.SAMPLES_MANIFEST,
    output:
        scores=paths.SCORES,
    wildcard_constraints:
        model=r"base|finetuned",
    log:
        paths.log("evaluate/{run}/score_{model}"),
    conda:
        "../envs/evaluate.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        cfg=TRANSCRIBE_RESULT_OPTIONS,
    script:
        "../scripts/score.py"


# The speaker's own held-out clips, scored the same way: the ceiling the samples are read against.
rule score_real:
    input:
        references=paths.REFERENCES,
    output:
        scores=paths.SCORES.format(run="{run}", model="real"),
    log:
        paths.log("evaluate/{run}/score_real"),
    conda:
        "../envs/evaluate.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        cfg=TRANSCRIBE_RESULT_OPTIONS,
    script:
        "../scripts/score.py"


rule training_curves:
    input:
        export=paths.EXPORT_MODEL,
        summary=paths.TRAIN_SUMMARY,
    output:
        plot=report(paths.LOSS_CURVES, caption="../report/loss_curves.rst", category=paths.report_category("train")),
        summary=paths.TRAINING,
    log:
        paths.log("evaluate/{run}/training_curves"),
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    params:
        log_dir=paths.TENSORBOARD,
    script:
        "../scripts/training_curves.py"


rule evaluate:
    input:
        scores=expand(paths.SCORES, model=["base", "finetuned", "real"], allow_missing=True),
        manifests=expand(paths.SAMPLES_MANIFEST, model=["base", "finetuned"], allow_missing=True),
        references=paths.REFERENCES,
        training=paths.TRAINING,
        stats=paths.DATASET_STATS,
    output:
        metrics=paths.METRICS,
        table=report(paths.METRICS_TABLE, caption="../report/metrics.rst", category=paths.report_category("evaluate")),
        markdown=paths.METRICS_MARKDOWN,
        samples_page=report(paths.SAMPLES_PAGE, caption="../report/samples.rst", category=paths.report_category("evaluate")),
    log:
        paths.log("evaluate/{run}/evaluate"),
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    script:
        "../scripts/evaluate.py"
