# ---------- evaluate: references -> samples (base, fine-tuned) -> scores -> metrics + report (docs/evaluate.md) ----------


report: "../report/workflow.rst"


wildcard_constraints:
    run=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    model=r"base|finetuned|real",


rule references:
    input:
        val="dataset/metadata_val.csv",
        wavs="dataset/wavs",
        transcripts=per_source("transcripts/{source}.json"),
    output:
        references="samples/{run}/references.json",
    log:
        "logs/evaluate/{run}/references.log",
    conda:
        "../envs/synthesize.yaml"
    threads: 1
    params:
        cfg=config["evaluate"],
    script:
        "../scripts/references.py"


rule synthesize:
    input:
        # the base model's folder (BASE_DIR, rules/train.smk) or the run's merged export
        model=lambda wildcards: (
            BASE_DIR if wildcards.model == "base" else f"checkpoints/{wildcards.run}/export/model.pth"
        ),
        references="samples/{run}/references.json",
    output:
        samples=directory("samples/{run}/{model}"),
        manifest="samples/{run}/{model}.json",
    wildcard_constraints:
        model=r"base|finetuned",
    log:
        "logs/evaluate/{run}/synthesize_{model}.log",
    benchmark:
        "logs/evaluate/{run}/synthesize_{model}.benchmark.tsv"
    conda:
        "../envs/synthesize.yaml"
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
        references="samples/{run}/references.json",
        manifest="samples/{run}/{model}.json",
    output:
        scores="samples/{run}/{model}.scores.json",
    wildcard_constraints:
        model=r"base|finetuned",
    log:
        "logs/evaluate/{run}/score_{model}.log",
    conda:
        "../envs/synthesize.yaml"
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
        references="samples/{run}/references.json",
    output:
        scores="samples/{run}/real.scores.json",
    log:
        "logs/evaluate/{run}/score_real.log",
    conda:
        "../envs/synthesize.yaml"
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
        export="checkpoints/{run}/export/model.pth",
        summary="checkpoints/{run}/train_summary.json",
    output:
        plot=report("reports/{run}/loss_curves.png", caption="../report/loss_curves.rst", category="2. Training"),
        summary="reports/{run}/training.json",
    log:
        "logs/evaluate/{run}/training_curves.log",
    conda:
        "../envs/synthesize.yaml"
    threads: 1
    params:
        log_dir="runs/{run}",
    script:
        "../scripts/training_curves.py"


rule evaluate:
    input:
        scores=expand("samples/{{run}}/{model}.scores.json", model=["base", "finetuned", "real"]),
        manifests=expand("samples/{{run}}/{model}.json", model=["base", "finetuned"]),
        references="samples/{run}/references.json",
        training="reports/{run}/training.json",
        stats="dataset/stats.json",
    output:
        metrics="reports/{run}/metrics.json",
        table=report("reports/{run}/metrics.csv", caption="../report/metrics.rst", category="3. Evaluation"),
        markdown="reports/{run}/metrics.md",
        samples_page=report("reports/{run}/samples.html", caption="../report/samples.rst", category="3. Evaluation"),
    log:
        "logs/evaluate/{run}/evaluate.log",
    conda:
        "../envs/synthesize.yaml"
    threads: 1
    script:
        "../scripts/evaluate.py"
