# ---------- speaker_embed: one source's segments -> embeddings/{source}.npz (Resemblyzer, 256-d) ----------
# Part of the dataset stage: the embeddings are what its speaker filter (dataset.speaker_similarity) reads.
rule speaker_embed:
    input:
        manifest=paths.SEGMENTS_MANIFEST,
        segments=paths.SEGMENTS,
        segment_status=paths.status("segment"),
        # the source's `reference:` clip of the target voice, if any: its segments are screened against it
        reference=source_reference,
    output:
        embeddings=paths.EMBEDDINGS,
        status=paths.status("speaker_embed"),
    log:
        paths.log("speaker_embed/{source}"),
    conda:
        "../envs/dataset.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        device=config["speaker_embed"]["device"],
    script:
        "../scripts/speaker_embed.py"


# ---------- quality: one source's segments -> quality/{source}.json (DNSMOS P.835 + SNR per clip) ----------
# Part of the dataset stage, planned only when one of its thresholds (dataset.min_dnsmos_*, min_snr_db) is set.
rule quality:
    input:
        manifest=paths.SEGMENTS_MANIFEST,
        segments=paths.SEGMENTS,
        segment_status=paths.status("segment"),
    output:
        scores=paths.QUALITY,
        status=paths.status("quality"),
    log:
        paths.log("quality/{source}"),
    benchmark:
        paths.benchmark("quality/{source}")
    conda:
        "../envs/dataset.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/quality.py"


# ---------- dataset: every source's transcripts + segments -> one LJSpeech dataset (docs/dataset.md) ----------
rule dataset:
    input:
        transcripts=per_source(paths.TRANSCRIPT),
        manifests=per_source(paths.SEGMENTS_MANIFEST),
        embeddings=per_source(paths.EMBEDDINGS),
        # which sources failed where (on_source_error: skip): left out of the dataset, listed in stats.json
        quality=lambda wildcards: source_targets(paths.QUALITY) if QUALITY_SCREEN else [],
        statuses=lambda wildcards: source_targets(paths.status("transcribe")) + source_targets(paths.status("speaker_embed"))
        + (source_targets(paths.status("quality")) if QUALITY_SCREEN else []) + expand(paths.URL_STATUS, url_id=URL_IDS),
        vocab=lambda wildcards: config["dataset"].get("vocab") or [],
    output:
        wavs=directory(paths.DATASET_WAVS),
        metadata=paths.DATASET_METADATA,
        train=paths.DATASET_TRAIN,
        val=paths.DATASET_VAL,
        coqui_train=paths.DATASET_COQUI_TRAIN,
        coqui_val=paths.DATASET_COQUI_VAL,
        rejected=paths.DATASET_REJECTED,
        clips=paths.DATASET_CLIPS,
        durations=report(paths.DATASET_DURATIONS, category=paths.report_category("dataset")),
        stats=paths.DATASET_STATS,
    log:
        paths.log("dataset"),
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
        clips=paths.DATASET_CLIPS,
        stats=paths.DATASET_STATS,
        segments=per_source(paths.SEGMENTS),  # the rejected clips' audio
    output:
        page=report(paths.REVIEW_PAGE, caption="../report/dataset.rst", category=paths.report_category("dataset")),
    log:
        paths.log("review"),
    conda:
        "../envs/dataset.yaml"
    threads: 2
    script:
        "../scripts/review.py"
