"""The working folder's layout: every file one stage writes and another reads, defined once.

The rules use the patterns (relative to the working folder; `{source}`, `{url_id}`, `{run}` and `{model}`
are Snakemake wildcards). The package uses the functions, which fill the same patterns under a root, or
the names inside a dataset or run folder, which it joins to a folder it was given (its command lines
work on folders anywhere). Tests spell paths out only where they assert this contract.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The stages in order: config `until`, the docs pages (docs/{stage}.md) and the report's categories.
STAGES = ("ingest", "segment", "transcribe", "dataset", "train", "evaluate")

# ---------- names inside a dataset folder (LJSpeech layout plus the dataset stage's records) ----------
WAVS = "wavs"  # {clip id}.wav
METADATA = "metadata.csv"  # id|text|normalized_text, every kept clip
METADATA_TRAIN = "metadata_train.csv"
METADATA_VAL = "metadata_val.csv"
COQUI_TRAIN = "metadata_coqui_train.csv"  # coqui formatter layout, with the speaker per clip
COQUI_VAL = "metadata_coqui_val.csv"
COQUI_LANGUAGE = "metadata_coqui_{language}_{split}.csv"  # per language, when the dataset has several
REJECTED = "rejected.csv"
DURATIONS = "durations.png"
STATS = "stats.json"
CLIPS = "clips.json"  # every clip, kept or rejected, with its scores and reasons

# ---------- names inside a training run's folder ----------
EXPORT = "export"  # the merged model, in XTTS's checkpoint layout
LORA = "lora"  # the adapter, in peft's layout
SUMMARY = "train_summary.json"
MODEL_WEIGHTS = "model.pth"  # XTTS's checkpoint layout names its weights so (base model and export alike)

# ---------- the working folder ----------
# every per-source stage: whether the source got through it (xttsflow/status.py); the dataset reads them
STATUS = "status/{stage}/{source}.json"
URL_STATUS = "status/resolve_url/{url_id}.json"
# ingest
URL_ENTRIES = "sources/{url_id}.json"  # what a URL source expanded to (checkpoint resolve_url)
RAW_AUDIO = "raw/{source}.flac"
RAW_INFO = "raw/{source}.json"
RAW_DENOISED = "raw/{source}.denoised.flac"  # rule denoise (only with segment.denoise)
# segment
SEGMENTS = "segments/{source}"  # {source}_{nnnn}.wav
SEGMENTS_MANIFEST = "segments/{source}.json"
# transcribe
TRANSCRIPT = "transcripts/{source}.json"
# dataset (speaker_embed feeds it)
EMBEDDINGS = "embeddings/{source}.npz"
QUALITY = "quality/{source}.json"  # DNSMOS and SNR per segment (only when the dataset's quality screen is on)
DATASET = "dataset"
DATASET_WAVS = f"{DATASET}/{WAVS}"
DATASET_METADATA = f"{DATASET}/{METADATA}"
DATASET_TRAIN = f"{DATASET}/{METADATA_TRAIN}"
DATASET_VAL = f"{DATASET}/{METADATA_VAL}"
DATASET_COQUI_TRAIN = f"{DATASET}/{COQUI_TRAIN}"
DATASET_COQUI_VAL = f"{DATASET}/{COQUI_VAL}"
DATASET_REJECTED = f"{DATASET}/{REJECTED}"
DATASET_DURATIONS = f"{DATASET}/{DURATIONS}"
DATASET_STATS = f"{DATASET}/{STATS}"
DATASET_CLIPS = f"{DATASET}/{CLIPS}"
# train
BASE_MODEL = "models/base"  # built or downloaded by rule base_model (unless train.base_model is a folder)
CHECKPOINTS = "checkpoints"
RUN_DIR = CHECKPOINTS + "/{run}"
EXPORT_DIR = f"{RUN_DIR}/{EXPORT}"
EXPORT_MODEL = f"{EXPORT_DIR}/{MODEL_WEIGHTS}"
TRAIN_SUMMARY = f"{RUN_DIR}/{SUMMARY}"
TENSORBOARD_ROOT = "runs"
TENSORBOARD = TENSORBOARD_ROOT + "/{run}"
# evaluate
REFERENCES = "samples/{run}/references.json"
SAMPLES = "samples/{run}/{model}"  # NNN.wav
SAMPLES_MANIFEST = "samples/{run}/{model}.json"
SCORES = "samples/{run}/{model}.scores.json"
LOSS_CURVES = "reports/{run}/loss_curves.png"
TRAINING = "reports/{run}/training.json"
METRICS = "reports/{run}/metrics.json"
METRICS_TABLE = "reports/{run}/metrics.csv"
METRICS_MARKDOWN = "reports/{run}/metrics.md"
SAMPLES_PAGE = "reports/{run}/samples.html"
REVIEW_PAGE = "reports/dataset.html"  # the dataset by ear (rule review): every clip playable


def log(name: str) -> str:
    """A job's log file, e.g. log("segment/{source}"): people read these, no rule does."""
    return f"logs/{name}.log"


def status(stage: str) -> str:
    """The status file pattern of a per-source stage, e.g. status("segment") -> status/segment/{source}.json."""
    return STATUS.replace("{stage}", stage)


def benchmark(name: str) -> str:
    """A job's `benchmark:` file, next to its log."""
    return f"logs/{name}.benchmark.tsv"


def report_category(stage: str) -> str:
    """The category of the HTML report (`snakemake --report`) that a stage's outputs are shown under."""
    return f"{STAGES.index(stage) + 1}. {stage.capitalize()}"


# ---------- the same paths for the package, under a working folder `root` ----------


def fill(pattern: str, root: str | os.PathLike = ".", **wildcards: str) -> Path:
    """`pattern` with its wildcards filled in, under `root`."""
    return Path(root) / pattern.format(**wildcards)


def base_model(root: str | os.PathLike = ".") -> Path:
    return fill(BASE_MODEL, root)


def run_dir(run: str, root: str | os.PathLike = ".") -> Path:
    return fill(RUN_DIR, root, run=run)


def export_dir(run: str, root: str | os.PathLike = ".") -> Path:
    return fill(EXPORT_DIR, root, run=run)


def export_model(run: str, root: str | os.PathLike = ".") -> Path:
    return fill(EXPORT_MODEL, root, run=run)


def train_summary(run: str, root: str | os.PathLike = ".") -> Path:
    return fill(TRAIN_SUMMARY, root, run=run)


def dataset_wavs(root: str | os.PathLike = ".") -> Path:
    return fill(DATASET_WAVS, root)


def references_by_run(root: str | os.PathLike = ".") -> dict[str, Path]:
    """Each run's references.json that exists under `root`, by run name."""
    return {path.parent.name: path for path in sorted(Path(root).glob(REFERENCES.format(run="*")))}


# ---------- who makes what: for the message when a stage finds another's output damaged ----------

#: Output pattern -> the rule that writes it (a folder's pattern covers the files inside it).
PRODUCERS = {
    URL_ENTRIES: "resolve_url", RAW_AUDIO: "ingest_local / ingest_url", RAW_INFO: "ingest_local / ingest_url",
    RAW_DENOISED: "denoise",
    SEGMENTS_MANIFEST: "segment", SEGMENTS: "segment", TRANSCRIPT: "transcribe", EMBEDDINGS: "speaker_embed",
    DATASET: "dataset", BASE_MODEL: "base_model", RUN_DIR: "train", TENSORBOARD: "train",
    REFERENCES: "references", SAMPLES_MANIFEST: "synthesize", SAMPLES: "synthesize", SCORES: "score / score_real",
    TRAINING: "training_curves", LOSS_CURVES: "training_curves", METRICS: "evaluate", REVIEW_PAGE: "review",
}


def producer(path: str | os.PathLike) -> str | None:
    """The rule that writes `path` (relative to the working folder or under it), if the layout names one."""
    import re

    text = Path(path).as_posix()
    # Longest patterns first: segments/{source}.json before segments/{source}.
    for pattern in sorted(PRODUCERS, key=len, reverse=True):
        regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(pattern))
        if re.search(rf"(^|/){regex}(/.*)?$", text):
            return PRODUCERS[pattern]
    return None


def remake(path: str | os.PathLike) -> str:
    """What to do about a damaged artifact: which rule makes it, and how to have it made again."""
    rule = producer(path)
    if rule is None:
        return "make it again or replace it"
    return f"it is made by rule {rule}: delete it and run again (or `snakemake --forcerun {rule.split(' ')[0]}`)"


def damaged(path: str | os.PathLike, reason: str) -> str:
    """The sentence for an artifact that is truncated, empty or not what its reader expects."""
    return f"{path} is damaged ({reason}) — {remake(path)}"
