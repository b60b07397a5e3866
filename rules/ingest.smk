# ---------- ingest: each source -> raw/{source}.flac (lossless) + raw/{source}.json (probe, provenance) (docs/ingest.md) ----------
# Local sources have ids that never start with "url-"; URL entries always do (see xttsflow/sources.py),
# so the two ingest rules never compete for one file.
from xttsflow.ingest import present
from xttsflow.sources import parent_url_id


rule ingest_local:
    input:
        # The recording itself, so that touching it re-runs this source only; nothing when it is missing,
        # so that this job fails with a clear message instead of the whole DAG.
        audio=lambda wildcards: present(source_info(wildcards.source)["location"]),
    output:
        audio=paths.RAW_AUDIO,
        info=paths.RAW_INFO,
        status=paths.status("ingest"),
    wildcard_constraints:
        source=r"(?!url-)[a-z0-9][a-z0-9-]*",
    params:
        source=lambda wildcards: source_info(wildcards.source),
    log:
        paths.log("ingest/{source}"),
    conda:
        "../envs/ingest.yaml"
    threads: 1
    script:
        "../scripts/ingest_local.py"


checkpoint resolve_url:
    output:
        entries=paths.URL_ENTRIES,
        status=paths.URL_STATUS,
    params:
        url=lambda wildcards: SOURCES[wildcards.url_id].location,
        retry=retry("resolve_url"),
    log:
        paths.log("resolve_url/{url_id}"),
    conda:
        "../envs/ingest.yaml"
    threads: 1
    script:
        "../scripts/resolve_url.py"


rule ingest_url:
    input:
        # `ancient`: re-listing a playlist (new entries) does not re-fetch the entries already there.
        entries=lambda wildcards: ancient(
            checkpoints.resolve_url.get(url_id=parent_url_id(wildcards.source)).output.entries
        ),
    output:
        audio=paths.RAW_AUDIO,
        info=paths.RAW_INFO,
        status=paths.status("ingest"),
    wildcard_constraints:
        source=r"url-[0-9a-f]{8}-[a-z0-9-]+",
    params:
        source=lambda wildcards: source_info(wildcards.source),
        retry=retry("ingest"),
        # Only the options that change the result; retries, archive and timeouts come from the config
        # in the script, so changing them never re-runs a finished download.
        fetch={k: config["ingest"][k] for k in ("audio_quality", "max_duration")},
    log:
        paths.log("ingest/{source}"),
    conda:
        "../envs/ingest.yaml"
    threads: 1
    script:
        "../scripts/ingest_url.py"
