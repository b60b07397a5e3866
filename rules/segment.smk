# ---------- segment: one source's raw audio -> WAV segments (22050 Hz mono) + manifest (docs/segment.md) ----------
rule segment:
    input:
        audio=paths.RAW_AUDIO,
        info=paths.RAW_INFO,
        ingest_status=paths.status("ingest"),
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
        cfg=config["segment"],
    script:
        "../scripts/segment.py"
