# ---------- dataset: every source's transcripts + segments -> one LJSpeech dataset (docs/dataset.md) ----------
rule dataset:
    input:
        transcripts=per_source("transcripts/{source}.json"),
        manifests=per_source("segments/{source}.json"),
        embeddings=per_source("embeddings/{source}.npz"),
        vocab=lambda wildcards: config["dataset"].get("vocab") or [],
    output:
        wavs=directory("dataset/wavs"),
        metadata="dataset/metadata.csv",
        train="dataset/metadata_train.csv",
        val="dataset/metadata_val.csv",
        coqui_train="dataset/metadata_coqui_train.csv",
        coqui_val="dataset/metadata_coqui_val.csv",
        rejected="dataset/rejected.csv",
        clips="dataset/clips.json",
        durations=report("dataset/durations.png", category="1. Dataset"),
        stats="dataset/stats.json",
    log:
        "logs/dataset.log",
    conda:
        "../envs/dataset.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        cfg=config["dataset"],
    script:
        "../scripts/dataset.py"


# The dataset by ear: every kept and rejected clip playable, with its scores and reasons (docs/dataset.md).
rule review:
    input:
        clips="dataset/clips.json",
        stats="dataset/stats.json",
        segments=per_source("segments/{source}"),  # the rejected clips' audio
    output:
        page=report(REVIEW_PAGE, caption="../report/dataset.rst", category="1. Dataset"),
    log:
        "logs/review.log",
    conda:
        "../envs/dataset.yaml"
    threads: 2
    script:
        "../scripts/review.py"
