"""Stage 6b: did the fine-tune bring the voice closer to the speaker without hurting intelligibility?

references: pick conditioning clips from the held-out val set (6-10 s, confident transcripts);
score: speaker similarity (Resemblyzer), CER/WER of a Whisper transcription, and speaking rate of each
sample against the real speaker; evaluate: base vs fine-tuned side by side -> metrics.json + tables.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from . import cli, paths
from .asr.config import TranscribeConfig
from .atomic import read_json, write_json
from .audio import read_wav
from .errors import XttsflowError
from .options import EvaluateConfig, parse
from .text_metrics import error_counts

log = logging.getLogger(__name__)

#: The models a run compares; "real" scores the speaker's own held-out clips the same way (the ceiling).
MODELS = ("base", "finetuned", "real")
#: The evaluate: options that choose the references, recorded with them.
REFERENCE_CRITERIA = ("num_references", "reference_min_duration", "reference_max_duration", "reference_min_confidence")


# ---------- reference clips ----------


def read_metadata(path: str | os.PathLike) -> list[dict]:
    """Rows of an LJSpeech metadata file (id|text|normalized_text); a missing file is an empty split."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("|")
        if len(cols) >= 2 and cols[0].strip():
            clip_id = Path(cols[0].strip()).stem  # tolerate "wavs/x.wav" as well as "x"
            rows.append({"id": clip_id, "text": cols[1], "normalized_text": cols[2] if len(cols) > 2 else cols[1]})
    return rows


def _transcript_index(transcripts: list[str | os.PathLike]) -> dict[str, dict]:
    """Segment id -> {confidence, flags, speaker, language} from the transcribe stage's JSON files."""
    index = {}
    for path in transcripts:
        data = read_json(path)
        for seg in data.get("segments", []):
            logprob = seg.get("avg_logprob")
            index[seg["id"]] = {
                "confidence": round(math.exp(logprob), 4) if logprob is not None else None,
                "no_speech_prob": seg.get("no_speech_prob"),
                "flags": list(seg.get("flags") or []),
                "speaker": data.get("speaker"),
                "language": seg.get("language") or data.get("language"),
                "source_language": data.get("language"),
            }
    return index


def _clip(dataset_dir: Path, row: dict, info: dict) -> dict | None:
    path = dataset_dir / paths.WAVS / f"{row['id']}.wav"
    if not path.is_file():
        log.warning("references: %s is listed in the metadata but %s is missing; skipped", row["id"], path)
        return None
    return {"id": row["id"], "file": str(path), "duration": round(sf.info(str(path)).duration, 3),
            "text": row["text"], "normalized_text": row["normalized_text"], "confidence": info.get("confidence"),
            "flags": info.get("flags", []), "speaker": info.get("speaker"),
            "language": info.get("source_language")}


def _rank(clips: list[dict], cfg: EvaluateConfig, count: int) -> tuple[list[dict], bool]:
    """Best references first; `relaxed` is True when fewer than `count` clips met every criterion."""
    low, high = cfg.reference_min_duration, cfg.reference_max_duration

    def good(c):
        return (low <= c["duration"] <= high and not c["flags"]
                and (c["confidence"] or 0.0) >= cfg.reference_min_confidence)

    def outside(c):
        return max(low - c["duration"], c["duration"] - high, 0.0)

    strict = sorted((c for c in clips if good(c)), key=lambda c: (-(c["confidence"] or 0.0), c["id"]))
    rest = sorted((c for c in clips if not good(c)),
                  key=lambda c: (bool(c["flags"]), round(outside(c), 1), -(c["confidence"] or 0.0), c["id"]))
    return strict + rest, len(strict) < count


def choose_references(dataset_dir: str | os.PathLike, transcripts: list, cfg: EvaluateConfig,
                      out: str | os.PathLike) -> dict:
    """Pick reference clips for conditioning and the held-out clips to compare against; write references.json."""
    dataset_dir = Path(dataset_dir)
    index = _transcript_index(transcripts)
    warnings = []
    held_out = True
    rows = read_metadata(dataset_dir / paths.METADATA_VAL)
    if not rows:
        held_out = False
        rows = read_metadata(dataset_dir / paths.METADATA_TRAIN) or read_metadata(dataset_dir / paths.METADATA)
        warnings.append("the dataset has no held-out (val) clips: references and comparison clips come from the "
                        "training set, so speaker similarity is optimistic")
    clips = [c for row in rows if (c := _clip(dataset_dir, row, index.get(row["id"], {})))]
    if cfg.speaker:
        clips = [c for c in clips if c["speaker"] == cfg.speaker]
    if not clips:
        who = f" of speaker {cfg.speaker!r}" if cfg.speaker else ""
        raise XttsflowError(f"evaluate: the dataset in {dataset_dir} has no clips{who} to take references from "
                            "— check evaluate.speaker and the dataset stage's stats.json")
    language = cfg.language or collections.Counter(c["language"] for c in clips).most_common(1)[0][0]
    if not language:
        raise XttsflowError("evaluate: the transcripts name no language — set evaluate.language (e.g. en)")
    by_id = {c["id"]: c for c in clips}
    if cfg.references:
        chosen, relaxed = [_override(item, by_id, dataset_dir) for item in cfg.references], False
    else:
        count = cfg.num_references
        if 1 < len(clips) <= count:  # keep at least one held-out clip to compare the samples with
            count = len(clips) - 1
            warnings.append(f"only {len(clips)} held-out clips: {count} are references, one is kept to compare with")
        ranked, relaxed = _rank(clips, cfg, count)
        chosen = ranked[:count]
        if relaxed:
            warnings.append(f"fewer than {count} held-out clips are {cfg.reference_min_duration}-"
                            f"{cfg.reference_max_duration} s long with confidence >= "
                            f"{cfg.reference_min_confidence} and no flags: took the closest ones")
    chosen_ids = {c["id"] for c in chosen}
    real = [c for c in clips if c["id"] not in chosen_ids]
    if not real:
        real = [c for c in clips]
        warnings.append("every held-out clip is also a reference: the real-speaker comparison includes them")
    for text in warnings:
        log.warning("references: %s", text)
    record = {
        "language": language,
        "speaker": cfg.speaker or collections.Counter(c["speaker"] for c in clips).most_common(1)[0][0],
        "held_out": held_out,
        "relaxed": relaxed,
        "criteria": {k: getattr(cfg, k) for k in REFERENCE_CRITERIA},
        "references": chosen,
        "real_clips": real,
        "speaker_rate": speaking_rate(real, language),
        "warnings": warnings,
    }
    write_json(out, record)
    log.info("references: %s; %d real clips to compare against", ", ".join(f"{c['id']} ({c['duration']} s)"
                                                                            for c in chosen), len(real))
    return record


def _override(item: str, by_id: dict, dataset_dir: Path) -> dict:
    """A configured reference: a dataset clip id, or a path to any audio file."""
    if item in by_id:
        return by_id[item]
    path = Path(item)
    if not path.is_file():
        raise XttsflowError(f"evaluate.references: {item!r} is neither a clip id in {dataset_dir}/wavs nor an "
                            "existing audio file — fix the entry or remove it to choose references automatically")
    from .audio import probe

    return {"id": path.stem, "file": str(path), "duration": round(probe(path)["duration"] or 0.0, 3), "text": "",
            "normalized_text": "", "confidence": None, "flags": [], "speaker": None, "language": None}


# ---------- metrics ----------


def speech_seconds(path: str | os.PathLike, floor_dbfs: float = -50.0, range_db: float = 40.0) -> float:
    """Time from the first to the last 10 ms frame of speech (within `range_db` of the loudest frame)."""
    samples, rate = read_wav(path)
    hop = max(1, rate // 100)
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    if not len(frames):
        return 0.0
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    voiced = np.flatnonzero(level >= max(floor_dbfs, level.max() - range_db))
    return float((voiced[-1] - voiced[0] + 1) * hop / rate) if len(voiced) else 0.0


def spoken_chars(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def speaking_rate(clips: list[dict], language: str) -> dict:
    """Characters (letters and digits) per second of speech over the given real clips."""
    chars = sum(spoken_chars(c.get("normalized_text") or c.get("text", "")) for c in clips)
    seconds = sum(speech_seconds(c["file"]) for c in clips)
    return {"chars": chars, "speech_seconds": round(seconds, 3),
            "chars_per_second": round(chars / seconds, 3) if seconds > 0 else None}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def score(model: str, items: list[dict], references: dict, transcribe_cfg: TranscribeConfig, out: str | os.PathLike,
          threads: int = 1) -> dict:
    """Per-sample speaker similarity, CER/WER and duration ratio for `items` [{file, text}]; write scores."""
    from .asr.transcriber import make_transcriber
    from .speaker import embed_files

    language, real = references["language"], references["real_clips"]
    if not items:
        raise XttsflowError(f"evaluate: nothing to score for {model} — the samples manifest lists no samples")
    files = [it["file"] for it in items]
    real_files = [c["file"] for c in real]
    # A lone real clip cannot be scored leave-one-out: it is compared with the reference clips instead.
    ref_files = [c["file"] for c in references["references"]] if model == "real" and len(real) < 2 else []
    embeddings = embed_files(files + real_files + ref_files)
    mine = embeddings[: len(files)]
    pool = list(zip(real_files + ref_files, embeddings[len(files):], strict=True))
    transcriber = make_transcriber(transcribe_cfg, threads=threads)
    transcripts = transcriber.transcribe(files, language)
    rate = (references.get("speaker_rate") or {}).get("chars_per_second")
    samples = []
    for i, (item, result) in enumerate(zip(items, transcripts, strict=True)):
        # A real clip is compared with the others (leave one out), never with itself.
        others = [e for f, e in pool if f != item["file"]]
        similarity = _cosine(mine[i], np.mean(others, axis=0)) if others else None  # None: nothing independent
        speech = speech_seconds(item["file"])
        expected = spoken_chars(item["text"]) / rate if rate else None
        samples.append({
            "file": item["file"], "text": item["text"], "transcript": result["text"].strip(),
            **error_counts(item["text"], result["text"], language),
            "speaker_similarity": None if similarity is None else round(similarity, 4),
            "duration": round(sf.info(item["file"]).duration, 3), "speech_seconds": round(speech, 3),
            "duration_ratio": round(speech / expected, 4) if expected else None,
        })
    for s in samples:
        s["cer"] = round(s["char_edits"] / max(s["chars"], 1), 4)
        s["wer"] = round(s["word_edits"] / max(s["words"], 1), 4)
    record = {"model": model, "language": language, "samples": samples, "summary": summarize(samples, rate),
              "transcriber": {"backend": transcriber.backend, "model": transcriber.model_name,
                              "version": transcriber.version}}
    write_json(out, record)
    log.info("score %s: %s", model, record["summary"])
    return record


def summarize(samples: list[dict], rate: float | None) -> dict:
    """Means over samples; CER/WER pooled over all words/characters (the usual corpus-level rates)."""
    speech = sum(s["speech_seconds"] for s in samples)
    chars = sum(spoken_chars(s["text"]) for s in samples)
    sims = [s["speaker_similarity"] for s in samples if s["speaker_similarity"] is not None]
    return {
        "samples": len(samples),
        "speaker_similarity": round(float(np.mean(sims)), 4) if sims else None,
        "cer": round(sum(s["char_edits"] for s in samples) / max(sum(s["chars"] for s in samples), 1), 4),
        "wer": round(sum(s["word_edits"] for s in samples) / max(sum(s["words"] for s in samples), 1), 4),
        "duration_ratio": round(speech / (chars / rate), 4) if rate and chars else None,
        "chars_per_second": round(chars / speech, 3) if speech > 0 else None,
        "audio_seconds": round(sum(s["duration"] for s in samples), 3),
    }


def score_model(model: str, references: str | os.PathLike, manifest: str | os.PathLike | None,
                transcribe_cfg: TranscribeConfig, out: str | os.PathLike, threads: int = 1) -> dict:
    """Score one model's samples (from its manifest), or the real held-out clips when model is "real"."""
    refs = read_json(references)
    if model == "real":
        items = [{"file": c["file"], "text": c["text"]} for c in refs["real_clips"]]
    else:
        record = read_json(manifest)
        folder = Path(manifest).with_suffix("")
        items = [{"file": str(folder / s["file"]), "text": s["text"]} for s in record["samples"]]
    return score(model, items, refs, transcribe_cfg, out, threads=threads)


# ---------- base vs fine-tuned ----------

#: Metric -> (label, True when higher is better); the order of the table.
METRICS = {
    "speaker_similarity": ("Speaker similarity (cosine, Resemblyzer)", True),
    "cer": ("Character error rate (Whisper)", False),
    "wer": ("Word error rate (Whisper)", False),
    "duration_ratio": ("Duration / real speaker's pace (1 = same)", None),
    "chars_per_second": ("Characters per second of speech", None),
    "rtf": ("Synthesis real-time factor (lower = faster)", False),
}


def compare(scores: dict[str, dict], manifests: dict[str, dict], references: dict, training: dict | None,
            dataset_stats: dict | None, run: str) -> dict:
    """metrics.json: per-model summaries, fine-tuned minus base, and each sentence side by side."""
    models = {}
    for name, record in scores.items():
        summary = dict(record["summary"])
        if name in manifests:
            m = manifests[name]
            summary["rtf"] = round(m["synthesis_seconds"] / max(m["audio_seconds"], 1e-9), 4)
        models[name] = summary
    delta = {k: round(models["finetuned"][k] - models["base"][k], 4) for k in METRICS
             if models["finetuned"].get(k) is not None and models["base"].get(k) is not None}
    pace = {k: abs(math.log(models[k]["duration_ratio"])) for k in ("base", "finetuned")
            if models[k].get("duration_ratio")}
    verdict = {
        "closer_to_speaker": delta.get("speaker_similarity", 0) > 0,
        "intelligibility_kept": delta.get("cer", 0) <= 0.02,
        "pace_closer_to_speaker": pace["finetuned"] < pace["base"] if len(pace) == 2 else None,
    }
    pairs = zip(scores["base"]["samples"], scores["finetuned"]["samples"], strict=True)
    sentences = [{"index": i, "text": b["text"], "base": _brief(b), "finetuned": _brief(f)}
                 for i, (b, f) in enumerate(pairs, 1)]
    return {
        "run": run,
        "language": references["language"],
        "speaker": references.get("speaker"),
        "references": [{"id": c["id"], "file": c["file"], "duration": c["duration"]} for c in references["references"]],
        "real_clips": len(references["real_clips"]),
        "models": models,
        "delta_finetuned_minus_base": delta,
        "verdict": verdict,
        "settings": manifests["finetuned"]["settings"],
        "transcriber": scores["finetuned"]["transcriber"],
        "sentences": sentences,
        "training": training or {},
        "dataset": {k: (dataset_stats or {}).get(k) for k in ("clips", "seconds", "hours", "train", "val")},
        "warnings": references.get("warnings", []),
    }


def _brief(sample: dict) -> dict:
    keys = ("file", "transcript", "speaker_similarity", "cer", "wer", "duration", "duration_ratio")
    return {k: sample[k] for k in keys}


def evaluate_run(run: str, scores: dict[str, str], manifests: dict[str, str], references: str,
                 training: str | None, dataset_stats: str | None, out: dict) -> dict:
    """Write metrics.json, the table (CSV + Markdown) and the samples page of the Snakemake report (the
    dataset's page is the review page, xttsflow.review)."""
    from . import report

    refs = read_json(references)
    metrics = compare({k: read_json(v) for k, v in scores.items()}, {k: read_json(v) for k, v in manifests.items()},
                      refs, read_json(training) if training else None,
                      read_json(dataset_stats) if dataset_stats else None, run)
    rows = report.metric_rows(metrics, METRICS)
    report.write_table_csv(out["table"], rows)
    report.write_table_markdown(out["markdown"], rows, metrics)
    if out.get("samples_page"):
        report.write_samples_page(out["samples_page"], metrics, rows)
    write_json(out["metrics"], metrics)
    log.info("evaluate %s: %s; verdict %s", run, metrics["delta_finetuned_minus_base"], metrics["verdict"])
    return metrics


def main(argv: list[str] | None = None) -> None:
    import yaml

    from .logs import setup_console

    parser = cli.parser("evaluate", __doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    refs = commands.add_parser("references", help="choose reference clips from a dataset's val split")
    refs.add_argument("--dataset", default="dataset")
    refs.add_argument("--transcripts", nargs="*", default=[])
    refs.add_argument("--config", help="YAML file whose evaluate: section (or the whole file) sets options")
    refs.add_argument("--out", required=True)
    sc = commands.add_parser("score", help="score one model's samples (or the real clips)")
    sc.add_argument("--model", choices=MODELS, required=True)
    sc.add_argument("--references", required=True)
    sc.add_argument("--manifest", help="samples/{run}/{model}.json (not for --model real)")
    sc.add_argument("--config", help="YAML file whose transcribe: section sets the recogniser (default: its defaults)")
    sc.add_argument("--out", required=True)
    ev = commands.add_parser("compare", help="base vs fine-tuned: metrics.json and tables")
    ev.add_argument("--run", default="main")
    ev.add_argument("--scores", nargs=3, metavar=("BASE", "FINETUNED", "REAL"), required=True)
    ev.add_argument("--manifests", nargs=2, metavar=("BASE", "FINETUNED"), required=True)
    ev.add_argument("--references", required=True)
    ev.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    setup_console()
    config = yaml.safe_load(Path(args.config).read_text()) if getattr(args, "config", None) else {}
    if args.command == "references":
        cfg = parse(EvaluateConfig, config.get("evaluate", config))
        choose_references(args.dataset, args.transcripts, cfg, args.out)
    elif args.command == "score":
        score_model(args.model, args.references, args.manifest, TranscribeConfig(**(config.get("transcribe") or {})),
                    args.out)
    else:
        out_dir = Path(args.out_dir)
        evaluate_run(args.run, dict(zip(MODELS, args.scores, strict=True)),
                     dict(zip(MODELS[:2], args.manifests, strict=True)), args.references, None, None,
                     {"metrics": out_dir / "metrics.json", "table": out_dir / "metrics.csv",
                      "markdown": out_dir / "metrics.md", "samples_page": out_dir / "samples.html"})


if __name__ == "__main__":
    sys.exit(cli.run("evaluate", main))
