# ---------- transcribe: one source's segments -> transcripts/{source}.json (text, confidence, flags) (docs/transcribe.md) ----------
# `resources: gpu=1` keeps concurrent jobs off one card: run with `--resources gpu=<cards>`. Inside a job,
# xttsflow.transcribe starts as many model workers as fit in free VRAM (docs/transcribe.md).
rule transcribe:
    input:
        manifest=paths.SEGMENTS_MANIFEST,
        segments=paths.SEGMENTS,
        segment_status=paths.status("segment"),
    output:
        transcript=paths.TRANSCRIPT,
        status=paths.status("transcribe"),
    log:
        paths.log("transcribe/{source}"),
    benchmark:
        paths.benchmark("transcribe/{source}")
    conda:
        "../envs/transcribe.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        # `workers` only changes speed (the script reads it from the config), so changing it never
        # re-runs a finished source.
        cfg=TRANSCRIBE_RESULT_OPTIONS,
        language=lambda wildcards: config["transcribe"].get("language") or source_info(wildcards.source)["language"],
    script:
        "../scripts/transcribe.py"
