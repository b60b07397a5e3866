"""Stage 4: every source's transcripts and segments -> one LJSpeech dataset that XTTS's trainer loads as it is.

Each clip passes every filter or lands in rejected.csv with all the reasons it failed, so nothing the
trainer would silently drop (too long, too many text tokens, unknown characters) reaches it, and a user
sees where their audio went before spending GPU hours.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import math
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from . import TRAIN_SAMPLE_RATE, XTTS_MAX_WAV_SAMPLES, cli, paths
from .atomic import atomic_dir, link_or_copy, read_json, write_json, write_text
from .errors import XttsflowError
from .options import DatasetConfig, parse
from .status import STATUS_GLOB, read_status
from .textnorm import XttsText, ambiguous_numbers, clean, normalize, same_language, xtts_language

log = logging.getLogger(__name__)

#: Filters in the order rejected.csv lists them (a clip may fail several).
FILTERS = ("audio", "untranscribed", "duration", "empty_text", "language", "characters", "text_tokens",
           "confidence", "flags", "speaker", "silence", "quality", "text_rate", "numbers")
#: Flags the transcribe screen raises that the dataset's own filters judge with their own thresholds.
OWN_FILTER_FLAGS = ("avg_logprob", "no_speech_prob", "language")
LJSPEECH_FILES = {"all": paths.METADATA, "train": paths.METADATA_TRAIN, "val": paths.METADATA_VAL}
COQUI_FILES = {"train": paths.COQUI_TRAIN, "val": paths.COQUI_VAL}
COQUI_HEADER = ["audio_file", "text", "speaker_name", "emotion_name"]


@dataclass(frozen=True)
class SourceFiles:
    """One source's inputs: transcripts/{source}.json, segments/{source}.json (+ folder), embeddings/{source}.npz."""

    source: str
    transcript: Path
    manifest: Path
    embeddings: Path | None = None
    quality: Path | None = None  # quality/{source}.json, where the quality screen is on

    @property
    def segments_dir(self) -> Path:
        return self.manifest.with_suffix("")


@dataclass
class Clip:
    id: str
    source: str
    speaker: str
    language: str | None
    wav: Path
    duration: float = 0.0
    text: str = ""
    normalized_text: str = ""
    tokens: int = 0
    segment: dict = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # filter -> why, in FILTERS order when written
    split: str = ""
    speaker_similarity: float | None = None
    parent: str | None = None  # the segment a piece was cut from (xttsflow.turns); its samples are in memory
    samples: np.ndarray | None = None
    rate: int = 0

    def reject(self, filter_name: str, why: str) -> None:
        self.reasons.setdefault(filter_name, why)


def split_bucket(clip_id: str) -> float:
    """A clip's place in [0, 1) from a hash of its id alone: its split never depends on other clips."""
    return int.from_bytes(hashlib.sha256(clip_id.encode("utf-8")).digest()[:8], "big") / 2**64


# ---------- reading the sources ----------


def _read_source(files: SourceFiles, config: DatasetConfig) -> tuple[list[Clip], str | None]:
    """The clips of one source (every manifest and transcript segment), or none and the error that stopped it."""
    try:
        manifest, transcript = read_json(files.manifest), read_json(files.transcript)
    except (OSError, ValueError, XttsflowError) as err:
        return [], (f"{files.source}: cannot read its manifest or transcript ({err}) — "
                    "re-run its segment and transcribe jobs")
    speaker = transcript.get("speaker") or manifest.get("speaker") or files.source
    declared = transcript.get("language") or manifest.get("language")
    listed = {seg["id"]: seg for seg in manifest.get("segments", [])}
    transcribed = {seg["id"]: seg for seg in transcript.get("segments", [])}
    clips = []
    for clip_id in sorted(listed.keys() | transcribed.keys()):
        seg = {**listed.get(clip_id, {}), **transcribed.get(clip_id, {})}
        detected = seg.get("language") or declared
        probability = seg.get("language_probability")
        sure = probability is None or probability >= config.min_language_probability
        mismatch = bool(declared and detected and sure and not same_language(detected, declared))
        language = detected if (mismatch and config.language_mismatch == "keep") else (declared or detected)
        language = xtts_language(language) or language  # pt-br and pt are one language to XTTS
        clip = Clip(clip_id, files.source, str(speaker), language,
                    files.segments_dir / seg.get("file", f"{clip_id}.wav"), segment=seg)
        if clip_id not in transcribed:
            clip.reject("untranscribed", "listed in the segments manifest but not in the transcript")
        if mismatch and config.language_mismatch == "reject":
            clip.reject("language", f"detected {detected} in a {declared} source")
        clips.append(clip)
    return clips, None


def _check_audio(clip: Clip, config: DatasetConfig) -> None:
    clip.duration = float(clip.segment.get("duration") or 0.0)  # the manifest's word, until the file speaks
    if not clip.wav.is_file():
        clip.reject("audio", f"missing file {clip.wav}")
        return
    try:
        info = sf.info(str(clip.wav))
    except (RuntimeError, sf.LibsndfileError) as err:
        clip.reject("audio", f"unreadable audio {clip.wav} ({err})")
        return
    if info.frames == 0:
        clip.reject("audio", f"no samples in {clip.wav}")
        return
    clip.duration = info.frames / info.samplerate
    xtts_samples = int(np.ceil(info.frames * TRAIN_SAMPLE_RATE / info.samplerate))
    if clip.duration < config.min_duration:
        clip.reject("duration", f"{clip.duration:.2f} s < {config.min_duration} s")
    elif clip.duration > config.max_duration or xtts_samples > XTTS_MAX_WAV_SAMPLES:
        clip.reject("duration", f"{clip.duration:.2f} s > {config.max_duration} s "
                                f"(XTTS drops clips over {XTTS_MAX_WAV_SAMPLES} samples at {TRAIN_SAMPLE_RATE} Hz)")


def _check_text(clip: Clip, config: DatasetConfig, xtts: XttsText) -> None:
    clip.text = clean(clip.segment.get("text", ""))
    if not clip.text:
        clip.reject("empty_text", "the transcript is empty")
        return
    language = xtts_language(clip.language)
    clip.normalized_text = normalize(clip.text, clip.language)
    if language is None:
        clip.reject("language", f"{clip.language or 'no language'} is not a language XTTS-v2 speaks")
        return
    if config.numbers == "drop" and (ambiguous := ambiguous_numbers(clip.text, language)):
        clip.reject("numbers", f"{', '.join(ambiguous)}: read by meaning (numbers: drop)")
    check = xtts.check(clip.normalized_text, language)
    if check.unsupported and config.unsupported_chars == "strip":
        clip.normalized_text = xtts.strip_unsupported(clip.normalized_text, check.unsupported)
        check = xtts.check(clip.normalized_text, language) if clip.normalized_text else check
    if check.error:
        clip.reject("characters", check.error)
    elif check.unsupported:
        clip.reject("characters", f"characters the tokenizer cannot encode: {' '.join(check.unsupported)}")
    elif not clip.normalized_text:
        clip.reject("empty_text", "nothing speakable left after removing unsupported characters")
    clip.tokens = check.tokens
    if check.tokens > config.max_text_tokens:
        clip.reject("text_tokens", f"{check.tokens} text tokens > {config.max_text_tokens} ({xtts.method})")


def _check_transcript_quality(clip: Clip, config: DatasetConfig) -> None:
    seg = clip.segment
    logprob, no_speech, ratio = seg.get("avg_logprob"), seg.get("no_speech_prob"), seg.get("speech_ratio")
    if config.min_avg_logprob is not None and logprob is not None and logprob < config.min_avg_logprob:
        clip.reject("confidence", f"avg_logprob {logprob:.2f} < {config.min_avg_logprob}")
    if config.max_no_speech_prob is not None and no_speech is not None and no_speech > config.max_no_speech_prob:
        clip.reject("confidence", f"no_speech_prob {no_speech:.2f} > {config.max_no_speech_prob}")
    skip = set(OWN_FILTER_FLAGS) | set(config.ignore_flags)
    flags = [f for f in seg.get("flags") or [] if f.split(":", 1)[0].strip() not in skip]
    if config.reject_flagged and flags:
        clip.reject("flags", "; ".join(flags))
    if config.min_speech_ratio is not None and ratio is not None and ratio < config.min_speech_ratio:
        clip.reject("silence", f"speech_ratio {ratio:.2f} < {config.min_speech_ratio}")


def _check_quality(clips: list[Clip], sources: Sequence[SourceFiles], config: DatasetConfig) -> None:
    """The audio-quality screen: DNSMOS P.835 and SNR (quality/{source}.json) against their thresholds."""
    if not config.screens_quality:
        return
    scores: dict[str, dict] = {}
    for files in sources:
        if files.quality is not None and Path(files.quality).is_file():
            scores.update(read_json(files.quality).get("clips", {}))
    limits = (("ovrl", config.min_dnsmos_ovrl, "DNSMOS OVRL"), ("bak", config.min_dnsmos_bak, "DNSMOS BAK"),
              ("snr_db", config.min_snr_db, "SNR"))
    for clip in clips:
        found = scores.get(clip.parent or clip.id)  # a piece inherits the scores of the segment it was cut from
        if found is None:
            clip.reject("quality", "no quality scores for this clip (re-run its quality job)")
            continue
        clip.segment["quality"] = found
        for key, limit, name in limits:
            if limit is not None and found.get(key, float("-inf")) < limit:
                clip.reject("quality", f"{name} {found.get(key)} < {limit}")
                break


#: A clip with this many windows of another voice holds another speaker (one stray window is noise).
WINDOWS_BELOW = 2
#: Fewer clips than this per speaker give no reliable quartiles: the text-rate filter leaves them alone.
RATE_MIN_CLIPS = 8


def _check_text_rate(clips: list[Clip], config: DatasetConfig) -> None:
    """Per speaker, characters per second outside [Q1 - k*IQR, Q3 + k*IQR]: text too long or short for its audio."""
    k = config.chars_per_second_iqr
    if k is None:
        return
    by_speaker: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        if not clip.reasons and clip.duration > 0:
            by_speaker[clip.speaker].append(clip)
    for speaker, members in by_speaker.items():
        if len(members) < RATE_MIN_CLIPS:
            continue
        rates = np.array([len(c.normalized_text) / c.duration for c in members])
        q1, q3 = np.percentile(rates, [25, 75])
        low, high = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
        for clip, rate in zip(members, rates, strict=True):
            if not low <= rate <= high:
                clip.reject("text_rate", f"{rate:.1f} characters/s outside {speaker}'s [{low:.1f}, {high:.1f}] "
                                         f"(quartiles +- {k} IQR)")


def _check_speakers(clips: list[Clip], sources: Sequence[SourceFiles], config: DatasetConfig) -> dict[str, np.ndarray]:
    """Reject clips far from their speaker's voice: a pinned source's reference clip (`reference:`), else the
    speaker's centroid, fit over that speaker's unpinned sources (a pinned source's other voice would pull it).

    Returns each screened clip's yardstick (unit vector), which a piece cut from it is judged against."""
    if config.speaker_similarity is None:
        return {}
    from .speaker import read_embeddings, read_reference, read_windows

    vectors: dict[str, np.ndarray] = {}
    windows: dict[str, np.ndarray] = {}
    references: dict[str, np.ndarray] = {}  # source -> its reference embedding
    for files in sources:
        if files.embeddings is None or not Path(files.embeddings).is_file():
            continue
        try:
            ids, emb = read_embeddings(files.embeddings)
            reference = read_reference(files.embeddings)
        except (OSError, ValueError, KeyError) as err:
            log.warning("%s: cannot read %s (%s); its clips count as speaker outliers", files.source,
                        files.embeddings, err)
            continue
        vectors.update(zip(ids, emb, strict=True))
        windows.update(read_windows(files.embeddings))
        if reference is not None:
            references[files.source] = reference
    groups: dict[tuple[str, str | None], list[Clip]] = defaultdict(list)  # (speaker, pinned source or None)
    targets: dict[str, np.ndarray] = {}
    for clip in clips:
        if clip.id in vectors:
            groups[clip.speaker, clip.source if clip.source in references else None].append(clip)
        else:
            clip.reject("speaker", "no speaker embedding for this clip (re-run its transcribe job)")
    for (speaker, pinned), members in groups.items():
        stacked = np.stack([vectors[c.id] for c in members])
        if pinned is None:
            similarity, target = _centroid(stacked, config.speaker_similarity)
            yardstick = f"{speaker}'s centroid"
        else:
            target = _unit_rows(references[pinned][None])[0]
            similarity, yardstick = _unit_rows(stacked) @ target, f"{pinned}'s reference clip"
        targets.update((clip.id, target) for clip in members)
        for clip, sim in zip(members, similarity, strict=True):
            clip.speaker_similarity = round(float(sim), 4)
            if sim < config.speaker_similarity:
                clip.reject("speaker", f"similarity {sim:.2f} < {config.speaker_similarity} to {yardstick}")
        if config.window_similarity is None or not windows:
            continue
        for clip in members:
            own = windows.get(clip.id)
            if own is None or not len(own):
                continue
            sims = _unit_rows(own) @ target
            if (sims < config.window_similarity).sum() >= WINDOWS_BELOW:
                clip.reject("speaker", f"{int((sims < config.window_similarity).sum())} of {len(sims)} 1.6 s "
                                       f"windows below {config.window_similarity} similarity to {yardstick} "
                                       f"(lowest {sims.min():.2f}): another voice in the segment")
    return targets


def _split_voices(clips: list[Clip], targets: dict[str, np.ndarray], config: DatasetConfig,
                  xtts: XttsText) -> list[Clip]:
    """The target's pieces of the segments the speaker screen alone rejected (xttsflow.turns), as new clips
    that then face every text filter; the segment stays rejected, its reason naming what was kept."""
    from .audio import read_wav
    from .turns import target_pieces

    if not config.split_voices or config.window_similarity is None:
        return []
    pieces = []
    for clip in clips:
        if set(clip.reasons) != {"speaker"} or clip.id not in targets or not clip.segment.get("words"):
            continue
        samples, rate = read_wav(clip.wav)
        found = target_pieces(samples, rate, clip.segment["words"], targets[clip.id],
                              window_threshold=config.window_similarity, clip_threshold=config.speaker_similarity,
                              windows_below=WINDOWS_BELOW, min_duration=config.min_duration,
                              device="cpu")  # a few windows per segment; the dataset job asks for no GPU
        offset = float(clip.segment.get("start") or 0.0)
        mine = []
        for k, found_piece in enumerate(found, 1):
            a, b = round(found_piece.start * rate), round(found_piece.end * rate)
            shift = found_piece.start
            words = [{**w, "start": round(w["start"] - shift, 3), "end": round(w["end"] - shift, 3)}
                     for w in found_piece.words]
            piece = Clip(f"{clip.id}-part{k}", clip.source, clip.speaker, clip.language, clip.wav,
                         duration=(b - a) / rate, speaker_similarity=found_piece.similarity, parent=clip.id,
                         samples=samples[a:b], rate=rate,
                         segment={**clip.segment, "text": found_piece.text, "words": words, "duration": (b - a) / rate,
                                  "start": round(offset + a / rate, 3), "end": round(offset + b / rate, 3)})
            _check_text(piece, config, xtts)
            mine.append(piece)
        if mine:
            clip.reasons["speaker"] += "; its target's part cut out as " + ", ".join(
                f"{p.id} ({p.duration:.1f} s)" for p in mine)
            pieces += mine
    if pieces:
        log.info("dataset: %d pieces in the target's voice cut from segments that hold another voice", len(pieces))
    return pieces


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _centroid(stacked: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each row's similarity to the centroid (refit once without outliers), and that unit centroid."""
    from .speaker import centroid_similarity

    similarity = centroid_similarity(stacked, threshold)
    inliers = stacked[similarity >= threshold]
    centroid = (inliers if len(inliers) else stacked).mean(axis=0)
    return similarity, centroid / max(float(np.linalg.norm(centroid)), 1e-12)


# ---------- the split ----------


def assign_split(clips: list[Clip], val_fraction: float, min_val_clips: int) -> list[str]:
    """Put each clip in train or val by the hash of its id; returns the ids a small-group fix moved.

    Per language (XTTS loads one dataset per language), a group that hashing left with fewer than
    `min_val_clips` val clips takes the train clips whose hashes lie nearest the val range, and a group
    left without train clips gets one back; only such tiny groups ever see a clip change side.
    """
    moved = []
    groups: dict[str | None, list[Clip]] = defaultdict(list)
    for clip in clips:
        clip.split = "val" if split_bucket(clip.id) < val_fraction else "train"
        groups[clip.language].append(clip)
    for members in groups.values():
        val = [c for c in members if c.split == "val"]
        train = sorted((c for c in members if c.split == "train"), key=lambda c: split_bucket(c.id))
        wanted = min(min_val_clips, len(members) - 1)
        for clip in train[: max(0, wanted - len(val))]:
            clip.split = "val"
            moved.append(clip.id)
        if not train and val:
            keep = max(val, key=lambda c: split_bucket(c.id))
            keep.split = "train"
            moved.append(keep.id)
    return moved


# ---------- writing ----------


def _write_wav(clip: Clip, path: Path) -> str:
    """A segment's file linked into the dataset (link_or_copy's word for how), a piece's samples written."""
    if clip.samples is None:
        return link_or_copy(clip.wav, path)
    from .audio import write_wav

    write_wav(path, clip.samples, clip.rate)
    return "written"


def _ljspeech_lines(clips: list[Clip]) -> str:
    return "".join(f"{c.id}|{c.text}|{c.normalized_text}\n" for c in clips)


def _coqui_lines(clips: list[Clip]) -> str:
    # csv quoting: the coqui formatter reads with csv.DictReader, so a text with '"' must be quoted.
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="|", lineterminator="\n")
    writer.writerow(COQUI_HEADER)
    writer.writerows([f"wavs/{c.id}.wav", c.normalized_text, c.speaker, "neutral"] for c in clips)
    return buf.getvalue()


def _rejected_lines(clips: list[Clip]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "source", "speaker", "duration", "filters", "reasons", "text"])
    for c in clips:
        names = [f for f in FILTERS if f in c.reasons]
        writer.writerow([c.id, c.source, c.speaker, f"{c.duration:.3f}", ";".join(names),
                         " | ".join(f"{n}: {c.reasons[n]}" for n in names), c.text])
    return buf.getvalue()


def clip_records(clips: list[Clip]) -> list[dict]:
    """Every clip, kept or rejected, with the scores the filters judged and why it was rejected: clips.json,
    which the review page (xttsflow.review) and the export's named voice (xttsflow.voices) read."""
    records = []
    for c in clips:
        seg = c.segment
        logprob = seg.get("avg_logprob")
        records.append({
            "id": c.id, "source": c.source, "speaker": c.speaker, "language": xtts_language(c.language) or c.language,
            "file": str(c.wav) if c.samples is None or not c.reasons else "", "cut_from": c.parent,
            "start": seg.get("start"), "end": seg.get("end"), "kept": not c.reasons, "split": c.split or None,
            "duration": round(c.duration, 3),
            "text": c.text or clean(seg.get("text", "")), "normalized_text": c.normalized_text, "tokens": c.tokens,
            "scores": {"confidence": round(math.exp(logprob), 4) if logprob is not None else None,
                       "avg_logprob": logprob, "no_speech_prob": seg.get("no_speech_prob"),
                       "speech_ratio": seg.get("speech_ratio"), "speaker_similarity": c.speaker_similarity},
            "flags": list(seg.get("flags") or []),
            "reasons": {name: c.reasons[name] for name in FILTERS if name in c.reasons},
        })
    return records


def _plot_durations(path: Path, kept: list[Clip], rejected: list[Clip], config: DatasetConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    durations = [c.duration for c in kept + rejected]
    top = max([config.max_duration + 1, *durations])
    bins = np.linspace(0, top, int(np.ceil(top * 2)) + 1)
    ax.hist([[c.duration for c in kept], [c.duration for c in rejected]], bins=bins, stacked=True,
            color=["tab:blue", "tab:gray"], label=[f"kept ({len(kept)})", f"rejected ({len(rejected)})"])
    for limit in (config.min_duration, config.max_duration):
        ax.axvline(limit, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xlabel("clip duration (s)")
    ax.set_ylabel("clips")
    ax.set_title(f"{len(kept)} clips, {sum(c.duration for c in kept) / 60:.1f} min kept")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def _summary(clips: list[Clip]) -> dict:
    durations = [c.duration for c in clips]
    if not durations:
        return {"clips": 0, "seconds": 0.0}
    return {"clips": len(clips), "seconds": round(sum(durations), 3), "min_s": round(min(durations), 3),
            "mean_s": round(statistics.fmean(durations), 3), "median_s": round(statistics.median(durations), 3),
            "max_s": round(max(durations), 3)}


def _quality_summary(kept: list[Clip]) -> dict:
    """Mean DNSMOS and SNR of the kept clips (each clip's scores are in quality/{source}.json)."""
    scores = [c.segment["quality"] for c in kept if "quality" in c.segment]
    return {key: round(statistics.fmean(s[key] for s in scores), 3) for key in ("sig", "bak", "ovrl", "snr_db")
            if scores}


def _datasets(kept: list[Clip], files: dict[str, dict[str, str]]) -> list[dict]:
    """Coqui BaseDatasetConfig fields (path relative to the dataset folder) that load this dataset."""
    languages = sorted({c.language for c in kept})
    if len(languages) == 1 and len({c.speaker for c in kept}) == 1:
        return [{"formatter": "ljspeech", "path": ".", "meta_file_train": LJSPEECH_FILES["train"],
                 "meta_file_val": LJSPEECH_FILES["val"], "language": xtts_language(languages[0])}]
    if len(languages) == 1:
        return [{"formatter": "coqui", "path": ".", "meta_file_train": COQUI_FILES["train"],
                 "meta_file_val": COQUI_FILES["val"], "language": xtts_language(languages[0])}]
    return [{"formatter": "coqui", "path": ".", "meta_file_train": files[lang]["train"],
             "meta_file_val": files[lang]["val"], "language": xtts_language(lang)} for lang in languages]


def _empty_dataset_error(clips: list[Clip], sources: dict, failed: dict) -> XttsflowError:
    counts = Counter(f for c in clips for f in c.reasons)
    removed = ", ".join(f"{name} {counts[name]}" for name in FILTERS if counts[name]) or "nothing"
    broken = [f"{s}: {info['error']}" for s, info in sources.items() if info.get("error")]
    broken += [f"{s} (failed in {why['stage']}): {why['reason']}" for s, why in failed.items()]
    return XttsflowError(
        f"dataset: no usable clips — {len(clips)} segments from {len(sources)} source(s), filters removed: "
        f"{removed}" + (f"; failed or unreadable sources: {'; '.join(broken)}" if broken else "")
        + ". Check the transcripts, or loosen the filters in the config's dataset: section")


# ---------- where every second went ----------

#: The stage whose decision each filter is (the rest are the dataset stage's own).
FILTER_STAGE = {"untranscribed": "transcribe"}


def account(manifest: Path, clips: list[Clip]) -> dict:
    """One source's seconds: decoded -> in segments -> transcribed -> kept, and each drop's stage and reason.

    A rejected clip's seconds are charged to its first failed filter (FILTERS order), less the seconds of
    the pieces cut from it (charged as clips of their own), so the drops add up to decoded minus kept.
    """
    try:
        record = read_json(manifest)
    except (OSError, ValueError, XttsflowError):
        record = {}
    in_segments = float(record.get("segments_duration") or sum(c.duration for c in clips if not c.parent))
    dropped: Counter = Counter()
    for piece in record.get("dropped", []):
        dropped[f"segment: {piece.get('reason', 'dropped')}"] += float(piece.get("duration", 0.0))
    decoded = float(record.get("total_duration") or in_segments + sum(dropped.values()))
    # what no segment holds: pauses beyond keep_silence_ms, silence, and the dropped pieces listed above
    dropped["segment: silence and pauses outside segments"] += max(0.0, decoded - in_segments - sum(dropped.values()))
    transcribed = kept = 0.0
    cut_out: Counter = Counter()  # segment id -> seconds of the pieces cut from it
    for c in clips:
        if c.parent:
            cut_out[c.parent] += c.duration
    for clip in clips:
        if "untranscribed" not in clip.reasons and not clip.parent:
            transcribed += clip.duration
        if not clip.reasons:
            kept += clip.duration
            continue
        first = next(f for f in FILTERS if f in clip.reasons)
        dropped[f"{FILTER_STAGE.get(first, 'dataset')}: {first}"] += clip.duration - cut_out[clip.id]
    return {"decoded": round(decoded, 3), "in_segments": round(in_segments, 3), "transcribed": round(transcribed, 3),
            "kept": round(kept, 3), "dropped": {k: round(v, 3) for k, v in sorted(dropped.items()) if v > 0}}


def total_seconds(per_source: list[dict], failed: dict[str, dict]) -> dict:
    """The sum of the sources' accounts, plus the failed sources (their seconds never reached a segment)."""
    total = {key: round(sum(acc[key] for acc in per_source), 3)
             for key in ("decoded", "in_segments", "transcribed", "kept")}
    dropped: Counter = Counter()
    for acc in per_source:
        dropped.update(acc["dropped"])
    total["dropped"] = {k: round(v, 3) for k, v in sorted(dropped.items())}
    total["failed_sources"] = {source: f"{why['stage']}: {why['reason']}" for source, why in failed.items()}
    return total


def failed_sources(statuses: Sequence) -> dict[str, dict]:
    """Source id -> {stage, reason} of each source a status file (xttsflow/status.py) says failed."""
    failed: dict[str, dict] = {}
    for path in statuses:
        record = read_status(path)
        if record is None:
            failed[Path(path).stem] = {"stage": Path(path).parent.name,
                                       "reason": f"{path} is missing or unreadable — re-run that job"}
        elif not record["ok"]:
            failed.setdefault(record.get("source") or Path(path).stem,
                              {"stage": record["stage"], "reason": record["reason"]})
    return dict(sorted(failed.items()))


def build_dataset(sources: Sequence[SourceFiles], out_dir: str | Path, config: DatasetConfig,
                  failed: dict[str, dict] | None = None) -> dict:
    """Filter, normalise and split every source's clips into `out_dir` (replaced whole); return stats.

    `failed` (failed_sources) are left out whole, never half-counted, and listed in stats.json."""
    out_dir = Path(out_dir)
    xtts = XttsText(config.vocab)
    clips: list[Clip] = []
    per_source: dict[str, dict] = {}
    failed = dict(failed or {})
    for source, why in failed.items():
        log.warning("dataset: source %s left out — it failed in %s: %s", source, why["stage"], why["reason"])
    sources = [f for f in sources if f.source not in failed]
    for files in sorted(sources, key=lambda f: f.source):
        found, error = _read_source(files, config)
        per_source[files.source] = {"segments": len(found), **({"error": error} if error else {})}
        if error:
            log.error("dataset: %s", error)
        clips.extend(found)
    for clip in clips:
        _check_audio(clip, config)
        if "untranscribed" not in clip.reasons:
            _check_text(clip, config, xtts)
        _check_transcript_quality(clip, config)
    targets = _check_speakers(clips, sources, config)
    clips += _split_voices(clips, targets, config, xtts)
    _check_quality(clips, sources, config)
    _check_text_rate(clips, config)

    kept = [c for c in clips if not c.reasons]
    rejected = [c for c in clips if c.reasons]
    for piece in (c for c in kept if c.parent):
        piece.wav = out_dir / paths.WAVS / f"{piece.id}.wav"  # where the review page and the voices find it
    manifests = {files.source: files.manifest for files in sources}
    accounts = {}
    for source, info in per_source.items():
        mine = [c for c in clips if c.source == source]
        accounts[source] = account(manifests[source], mine)
        info["kept"] = sum(not c.reasons for c in mine)
        info["rejected_by_filter"] = dict(Counter(f for c in mine for f in c.reasons))
        if mine:
            info["speaker"], info["language"] = mine[0].speaker, mine[0].language
        if info["kept"] == 0:
            why = ", ".join(f"{k} {v}" for k, v in info["rejected_by_filter"].items()) or "it has no segments"
            log.warning("dataset: 0 usable clips from source %s (%d segments; %s)", source, len(mine), why)
        else:
            log.info("dataset: %d of %d clips kept from source %s", info["kept"], len(mine), source)
    if not kept:
        raise _empty_dataset_error(clips, per_source, failed)

    moved = assign_split(kept, config.val_fraction, config.min_val_clips)
    train = [c for c in kept if c.split == "train"]
    val = [c for c in kept if c.split == "val"]
    languages = sorted({c.language for c in kept})
    lang_files = {lang: {s: paths.COQUI_LANGUAGE.format(language=xtts_language(lang), split=s)
                         for s in ("train", "val")} for lang in languages} if len(languages) > 1 else {}

    with atomic_dir(out_dir) as tmp:
        (tmp / paths.WAVS).mkdir()
        links = Counter(_write_wav(c, tmp / paths.WAVS / f"{c.id}.wav") for c in kept)
        write_text(tmp / LJSPEECH_FILES["all"], _ljspeech_lines(kept))
        write_text(tmp / LJSPEECH_FILES["train"], _ljspeech_lines(train))
        write_text(tmp / LJSPEECH_FILES["val"], _ljspeech_lines(val))
        write_text(tmp / COQUI_FILES["train"], _coqui_lines(train))
        write_text(tmp / COQUI_FILES["val"], _coqui_lines(val))
        for lang, names in lang_files.items():
            for split, name in names.items():
                write_text(tmp / name, _coqui_lines([c for c in kept if c.split == split and c.language == lang]))
        write_text(tmp / paths.REJECTED, _rejected_lines(rejected))
        write_json(tmp / paths.CLIPS, {"filters": list(FILTERS), "clips": clip_records(clips)})
        _plot_durations(tmp / paths.DURATIONS, kept, rejected, config)
        stats = {
            **_summary(kept),
            "hours": round(sum(c.duration for c in kept) / 3600, 4),
            "segments_in": sum(not c.parent for c in clips),
            "pieces_cut": {"clips": sum(bool(c.parent) for c in clips), "kept": sum(bool(c.parent) for c in kept),
                           "kept_s": round(sum(c.duration for c in kept if c.parent), 3)},
            "rejected": len(rejected),
            "rejected_by_filter": {f: n for f in FILTERS if (n := sum(f in c.reasons for c in clips))},
            "train": _summary(train),
            "val": _summary(val),
            "split": {"method": "sha256(clip id)", "val_fraction": config.val_fraction,
                      "min_val_clips": config.min_val_clips, "moved_for_small_groups": moved},
            "sources": per_source,
            "failed_sources": failed,
            **({"quality": _quality_summary(kept)} if config.screens_quality else {}),
            "accounting": {"total": total_seconds(list(accounts.values()), failed), "sources": accounts},
            "speakers": {s: _summary([c for c in kept if c.speaker == s]) for s in sorted({c.speaker for c in kept})},
            "languages": {xtts_language(lang): _summary([c for c in kept if c.language == lang]) for lang in languages},
            "text": {"tokenizer": xtts.method, "max_tokens": max(c.tokens for c in kept),
                     "mean_tokens": round(statistics.fmean(c.tokens for c in kept), 2),
                     "chars_per_second": round(sum(len(c.normalized_text) for c in kept)
                                               / max(sum(c.duration for c in kept), 1e-9), 2)},
            "wavs": dict(links),
            "datasets": _datasets(kept, lang_files),
            "config": config.model_dump(),
        }
        write_json(tmp / paths.STATS, stats)
    log.info("dataset: %d clips (%.1f min; train %d, val %d), %d rejected %s -> %s", len(kept),
             stats["seconds"] / 60, len(train), len(val), len(rejected), stats["rejected_by_filter"], out_dir)
    return stats


def sources_from_paths(transcripts: Sequence, manifests: Sequence, embeddings: Sequence = (),
                       quality: Sequence = ()) -> list[SourceFiles]:
    """Pair each source's files by name (transcripts/X.json, segments/X.json, embeddings/X.npz, quality/X.json)."""
    by_name = {Path(p).stem: Path(p) for p in manifests}
    emb = {Path(p).stem: Path(p) for p in embeddings}
    scores = {Path(p).stem: Path(p) for p in quality}
    missing = [Path(t).stem for t in transcripts if Path(t).stem not in by_name]
    if missing:
        raise XttsflowError(f"dataset: no segments manifest for source(s) {missing} — run the segment stage first")
    return [SourceFiles(Path(t).stem, Path(t), by_name[Path(t).stem], emb.get(Path(t).stem), scores.get(Path(t).stem))
            for t in transcripts]


# ---------- command line ----------


def _optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "off", "null") else kind(text)

    return parse


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser(
        "dataset", "Build the LJSpeech dataset from a workflow folder's transcripts/, segments/ and embeddings/.")
    parser.add_argument("root", nargs="?", default=".", help="folder holding transcripts/, segments/, embeddings/")
    parser.add_argument("--out", help="dataset folder to (re)write (default: ROOT/dataset)")
    parser.add_argument("--source", action="append", help="only these source ids (repeatable; default: all)")
    defaults = DatasetConfig()
    for name in DatasetConfig.model_fields:
        value = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        if name == "ignore_flags":
            parser.add_argument(flag, nargs="*", default=[], help="flag names not to reject for")
        elif isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            kind = {int: int, float: float}.get(type(value), str)
            if name in ("min_avg_logprob", "max_no_speech_prob", "speaker_similarity", "min_speech_ratio",
                        "min_dnsmos_ovrl", "min_dnsmos_bak", "min_snr_db", "chars_per_second_iqr",
                        "window_similarity"):
                kind = _optional(float)
            parser.add_argument(flag, type=kind, default=value, help=f"default: {value}")
    args = parser.parse_args(argv)
    setup_console()
    root = Path(args.root)
    transcripts = sorted((root / "transcripts").glob("*.json"))
    if args.source:
        transcripts = [t for t in transcripts if t.stem in set(args.source)]
    if not transcripts:
        raise XttsflowError(f"dataset: no transcripts found in {root / 'transcripts'} — run the transcribe stage first")
    config = parse(DatasetConfig, {name: getattr(args, name) for name in DatasetConfig.model_fields})
    sources = sources_from_paths(transcripts, sorted((root / "segments").glob("*.json")),
                                 sorted((root / "embeddings").glob("*.npz")), sorted((root / "quality").glob("*.json")))
    statuses = sorted(root.glob(STATUS_GLOB))
    stats = build_dataset(sources, args.out or root / "dataset", config, failed=failed_sources(statuses))
    print(f"{stats['clips']} clips ({stats['seconds'] / 60:.1f} min), {stats['rejected']} rejected: "
          f"{stats['rejected_by_filter']}")


if __name__ == "__main__":
    sys.exit(cli.run("dataset", main))
