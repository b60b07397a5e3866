# ---------- segment: one source's raw audio -> WAV segments (22050 Hz mono) + manifest (docs/segment.md) ----------
# segment.denoise: rule denoise writes raw/{source}.denoised.flac first and segment reads it instead of the
# raw FLAC; off, rule denoise plans no job and the DAG is the one without it.
DENOISE = config["segment"]["denoise"]


rule denoise:
    input:
        audio=paths.RAW_AUDIO,
        ingest_status=paths.status("ingest"),
    output:
        audio=paths.RAW_DENOISED,
        status=paths.status("denoise"),
    log:
        paths.log("denoise/{source}"),
    benchmark:
        paths.benchmark("denoise/{source}")
    conda:
        "../envs/segment.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/denoise.py"


rule segment:
    input:
        audio=paths.RAW_DENOISED if DENOISE else paths.RAW_AUDIO,
        info=paths.RAW_INFO,
        ingest_status=paths.status("ingest"),
        # a source that failed in denoise is passed on like one that failed in ingest (xttsflow/status.py)
        upstream_status=[paths.status("denoise")] if DENOISE else [],
    output:
        segments=directory(paths.SEGMENTS),
        manifest=paths.SEGMENTS_MANIFEST,
        status=paths.status("segment"),
    log:
        paths.log("segment/{source}"),
    benchmark:
        paths.benchmark("segment/{source}")
    conda:
        "../envs/segment.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        # `denoise: false` is left out, so the params (and so the plan) of existing runs stay the same; the
        # input file already changes when it is switched.
        cfg={k: v for k, v in config["segment"].items() if k != "denoise" or v},
    script:
        "../scripts/segment.py"
