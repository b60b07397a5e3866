# ---------- segment: one source's raw audio -> WAV segments (22050 Hz mono) + manifest ----------
rule segment:
    input:
        audio="raw/{source}.flac",
        info="raw/{source}.json",
    output:
        segments=directory("segments/{source}"),
        manifest="segments/{source}.json",
    log:
        "logs/segment/{source}.log",
    benchmark:
        "logs/segment/{source}.benchmark.tsv"
    conda:
        "../envs/segment.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        cfg=config["segment"],
    script:
        "../scripts/segment.py"
