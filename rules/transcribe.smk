# ---------- transcribe: one source's segments -> transcripts/{source}.json (text, confidence, flags) ----------
# `resources: gpu=1` keeps concurrent jobs off one card: run with `--resources gpu=<cards>`. Inside a job,
# xttsflow.transcribe starts as many model workers as fit in free VRAM (docs/transcribe.md).
rule transcribe:
    input:
        manifest="segments/{source}.json",
        segments="segments/{source}",
    output:
        transcript="transcripts/{source}.json",
    log:
        "logs/transcribe/{source}.log",
    benchmark:
        "logs/transcribe/{source}.benchmark.tsv"
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


# ---------- speaker_embed: one source's segments -> embeddings/{source}.npz (Resemblyzer, 256-d) ----------
rule speaker_embed:
    input:
        manifest="segments/{source}.json",
        segments="segments/{source}",
    output:
        embeddings="embeddings/{source}.npz",
    log:
        "logs/speaker_embed/{source}.log",
    conda:
        "../envs/transcribe.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        device=config["speaker_check"]["device"],
    script:
        "../scripts/speaker_embed.py"
