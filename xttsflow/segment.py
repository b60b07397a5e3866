"""Stage 2 — segment: one recording -> loudness-normalised speech segments (mono 16-bit WAV) + a manifest.

Two streaming passes keep memory flat however long the recording: pass 1 measures the power of every
10 ms frame, the cut plan is made from those numbers alone, and pass 2 decodes again and writes the
planned segments. `python -m xttsflow.segment INPUT OUT_DIR MANIFEST` runs the stage on its own.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cli
from .atomic import atomic_dir, read_json, write_json
from .audio import decode_stream
from .errors import XttsflowError
from .options import SegmentConfig, parse

log = logging.getLogger(__name__)

FRAMES_PER_S = 100  # 10 ms analysis frames, the unit of every decision below
BLOCK_S = 20  # decode in 20 s blocks: large enough for numpy to be fast, small enough to stay in cache
SMOOTH_FRAMES = 5  # a forced cut looks for the quietest 50 ms, not the quietest single frame
TAIL_FRAMES = 20  # how far into a pause (200 ms) the faint end of speech is looked for
TAIL_MARGIN_DB = 10.0  # ... and how far above the pause's noise floor it must be
DB_FLOOR = -120.0  # dBFS reported for digital silence (JSON has no -inf)


# ---------- pass 1: frame powers ----------

def frame_bounds(n_frames: int, sample_rate: int) -> np.ndarray:
    """Sample index where each 10 ms frame starts (n_frames + 1 values; 22050 Hz frames are 220/221 long)."""
    return (np.arange(n_frames + 1, dtype=np.int64) * sample_rate) // FRAMES_PER_S


def frame_power(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean square of every complete 10 ms frame of `samples` (which must start on a frame boundary)."""
    n = len(samples) * FRAMES_PER_S // sample_rate
    if n == 0:
        return np.zeros(0, np.float32)
    bounds = frame_bounds(n, sample_rate)
    sums = np.add.reduceat(np.square(samples[: bounds[-1]], dtype=np.float32), bounds[:-1])
    return (sums / np.diff(bounds)).astype(np.float32)


def block_samples(sample_rate: int) -> int:
    """A decode block size that always ends on a frame boundary."""
    period = sample_rate // math.gcd(sample_rate, FRAMES_PER_S)  # samples in the shortest whole-frame span
    return period * max(1, BLOCK_S * sample_rate // period)


def measure(path: str | os.PathLike, sample_rate: int) -> tuple[np.ndarray, int]:
    """Pass 1: the power of every complete 10 ms frame and the total number of samples, streamed."""
    powers, total = [], 0
    for block in decode_stream(path, sample_rate, block_samples(sample_rate)):
        # Blocks are whole multiples of the frame period, so only the very last one has a ragged tail.
        powers.append(frame_power(block, sample_rate))
        total += len(block)
    return (np.concatenate(powers) if powers else np.zeros(0, np.float32)), total


# ---------- the plan: frames -> segments ----------

@dataclass(frozen=True)
class Span:
    """Frames [start, end) of the source, and how each edge was cut (start|silence|forced|end)."""

    start: int
    end: int
    start_cut: str
    end_cut: str
    pause_before: int = 0  # frames of pause between this span and the previous one


def find_pauses(silent: np.ndarray, min_frames: int) -> np.ndarray:
    """Runs of silent frames as [start, end) rows: those of `min_frames` or more, and any touching an edge."""
    edges = np.diff(np.concatenate(([0], silent.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = (ends - starts >= min_frames) | (starts == 0) | (ends == len(silent))
    return np.stack([starts[keep], ends[keep]], axis=1)


def refine_pauses(pauses: np.ndarray, power: np.ndarray, tail_frames: int = TAIL_FRAMES) -> np.ndarray:
    """Move pause edges past the faint ends of speech (a final consonant's release, a decaying vowel).

    A frame near the edge of a pause still belongs to the speech when it is 10 dB above the pause's own
    noise floor (its median): cuts then keep those tails, and pause edges match where speech really stops.
    """
    out = pauses.copy()
    n = len(power)
    for k, (s, e) in enumerate(pauses.tolist()):
        level = power[s:e]
        reach = min(tail_frames, (e - s) // 2)
        floor = max(float(np.median(level)), 1e-9)  # digital silence: measure from -90 dBFS
        loud = np.flatnonzero(level >= floor * 10 ** (TAIL_MARGIN_DB / 10))
        head, tail = loud[loud < reach], loud[loud >= (e - s) - reach]
        new_s = s + int(head[-1]) + 1 if s > 0 and head.size else s
        new_e = s + int(tail[0]) if e < n and tail.size else e
        if new_s < new_e:
            out[k] = (new_s, new_e)
    return out


def speech_chunks(pauses: np.ndarray, n: int, keep_frames: int) -> list[Span]:
    """Speech between pauses, each widened by up to `keep_frames` of its pauses but never past their middle."""
    cuts = np.concatenate(([0], pauses.ravel(), [n])).reshape(-1, 2)
    cuts = cuts[cuts[:, 1] > cuts[:, 0]].tolist()
    spans = []
    for k, (s, e) in enumerate(cuts):
        gap_before = s - cuts[k - 1][1] if k else s
        gap_after = cuts[k + 1][0] - e if k + 1 < len(cuts) else n - e
        # The edge of the recording is not shared, so its silence may all go to this span.
        pad_before = min(keep_frames, gap_before - gap_before // 2 if k else gap_before)
        pad_after = min(keep_frames, gap_after // 2 if k + 1 < len(cuts) else gap_after)
        spans.append(Span(s - pad_before, e + pad_after, "silence" if k else "start",
                          "silence" if k + 1 < len(cuts) else "end", gap_before if k else 0))
    return spans


def detect_pauses(power: np.ndarray, cfg: SegmentConfig, silent: np.ndarray | None = None) -> np.ndarray:
    """Qualifying pauses as [start, end) frame rows. `silent` defaults to frames below the silence threshold."""
    if silent is None:
        silent = power < 10 ** (cfg.silence_thresh_dbfs / 10)
    return refine_pauses(find_pauses(silent, math.ceil(cfg.min_silence_ms * FRAMES_PER_S / 1000)), power)


def find_speech(power: np.ndarray, cfg: SegmentConfig, silent: np.ndarray | None = None) -> list[Span]:
    """Speech chunks between the qualifying pauses, with their share of the pauses' silence."""
    keep = round(cfg.keep_silence_ms * FRAMES_PER_S / 1000)
    return speech_chunks(detect_pauses(power, cfg, silent), len(power), keep)


def force_cuts(start: int, end: int, quiet: np.ndarray, min_frames: int, max_frames: int) -> list[int]:
    """Cut points splitting [start, end) into pieces no longer than max, each at the quietest frame allowed.

    The piece count aims at the middle of [min, max]; the window for each cut keeps the rest splittable.
    """
    low = min(min_frames, max_frames // 2)  # with max < 2*min, pieces >= max/2 is what remains possible
    target = (min_frames + max_frames) / 2
    cuts, c = [], start
    while end - c > max_frames:
        rest = end - c
        fewest, most = -(-rest // max_frames), max(-(-rest // max_frames), rest // low)
        pieces = min(max(round(rest / target), fewest), most)
        lo = c + max(low, rest - (pieces - 1) * max_frames)
        hi = c + min(max_frames, rest - (pieces - 1) * low)
        c = lo + int(np.argmin(quiet[lo: hi + 1]))
        cuts.append(c)
    return cuts


def plan(power: np.ndarray, cfg: SegmentConfig, silent: np.ndarray | None = None) -> tuple[list[Span], list[Span]]:
    """(segments, dropped) in frames. `silent` defaults to frames below the silence threshold (VAD passes its own)."""
    if power.size == 0:  # shorter than one frame
        return [], []
    min_f, max_f = round(cfg.min_duration * FRAMES_PER_S), round(cfg.max_duration * FRAMES_PER_S)
    max_pause = cfg.max_inner_pause_ms * FRAMES_PER_S / 1000
    chunks = find_speech(power, cfg, silent)

    # Speech that runs past the maximum without a qualifying pause is cut at its quietest points.
    quiet = np.convolve(power, np.ones(SMOOTH_FRAMES, np.float32) / SMOOTH_FRAMES, mode="same")
    units: list[Span] = []
    for ch in chunks:
        edges = [ch.start, *force_cuts(ch.start, ch.end, quiet, min_f, max_f), ch.end]
        for k in range(len(edges) - 1):
            units.append(Span(edges[k], edges[k + 1], ch.start_cut if k == 0 else "forced",
                              ch.end_cut if k == len(edges) - 2 else "forced", ch.pause_before if k == 0 else 0))

    return partition(units, min_f, max_f, max_pause)


def partition(units: list[Span], min_f: int, max_f: int, max_pause: float) -> tuple[list[Span], list[Span]]:
    """(segments, dropped): runs of neighbouring units, each within [min_f, max_f] frames, keeping the most speech.

    Dynamic programming over the cut points between units (exact, not greedy): of all partitions it takes
    one that keeps the most frames; among those, the one whose segments hold the shortest inner pauses
    (sum of squares), so that cuts fall in the longest pauses; then the fewest segments. A run never
    spans a pause over max_pause. Units no partition can keep are dropped (they are shorter than min_f
    and sit between pauses too long to merge across, or next to neighbours too long to join).
    """
    n = len(units)
    # best[k]: the score (kept frames, -inner pause cost, -segments) of the best plan for units[:k], and
    # where its last segment starts (-1: unit k-1 is dropped)
    best: list[tuple[tuple[int, float, int], int]] = [((0, 0.0, 0), 0)] * (n + 1)
    for j in range(1, n + 1):
        best[j] = (best[j - 1][0], -1)
        speech, inner = 0, 0.0
        for i in range(j - 1, -1, -1):  # segment units[i:j]
            if units[j - 1].end - units[i].start > max_f:
                break
            speech += units[i].end - units[i].start
            if units[j - 1].end - units[i].start >= min_f:
                (kept, cost, count), _ = best[i]
                score = (kept + speech, cost - inner, count - 1)
                if score > best[j][0]:
                    best[j] = (score, i)
            if units[i].pause_before > max_pause:
                break  # no segment reaches across this pause
            inner += float(units[i].pause_before) ** 2
    segments: list[Span] = []
    dropped: list[Span] = []
    j = n
    while j > 0:
        step = best[j][1]
        if step < 0:
            dropped.append(units[j - 1])
            j -= 1
            continue
        first, last = units[step], units[j - 1]
        segments.append(Span(first.start, last.end, first.start_cut, last.end_cut, first.pause_before))
        j = step
    return segments[::-1], dropped[::-1]


# ---------- pass 2: cut, normalise, write ----------

def slices(blocks, bounds: list[tuple[int, int]]):
    """Yield samples[s:e] for sorted, non-overlapping (s, e) sample ranges of a stream of consecutive blocks."""
    pieces: list[np.ndarray] = []
    have_from = have_to = 0  # the pieces hold samples [have_from, have_to)
    for s, e in bounds:
        while have_to < e:
            block = next(blocks, None)
            if block is None:
                raise XttsflowError("the decoded audio ended early (did the file change while it was read?)")
            pieces.append(block)
            have_to += len(block)
            while pieces and have_from + len(pieces[0]) <= s:  # nothing before s is needed again
                have_from += len(pieces.pop(0))
        while pieces and have_from + len(pieces[0]) <= s:
            have_from += len(pieces.pop(0))
        buf = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        yield buf[s - have_from: e - have_from]


def _db(power: float) -> float:
    return round(max(DB_FLOOR, 10 * math.log10(power)) if power > 0 else DB_FLOOR, 2)


def finish(samples: np.ndarray, speech_power: float, cfg: SegmentConfig) -> tuple[np.ndarray, float]:
    """Normalise speech loudness to the target (never pushing the peak over the limit), fade, quantise to int16."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak <= 0:
        return np.zeros(samples.size, np.int16), 0.0
    gain_db = cfg.target_dbfs - 10 * math.log10(speech_power) if speech_power > 0 else 0.0
    gain_db = min(gain_db, cfg.peak_limit_dbfs - 20 * math.log10(peak))
    out = samples * np.float32(10 ** (gain_db / 20))
    n = min(cfg.fade_ms * cfg.sample_rate // 1000, out.size // 2)
    if n:
        ramp = np.arange(n, dtype=np.float32) / np.float32(n)
        out[:n] *= ramp
        out[out.size - n:] *= ramp[::-1]
    return np.clip(np.rint(out * 32767), -32768, 32767).astype(np.int16), gain_db


def segment_file(audio: str | os.PathLike, out_dir: str | os.PathLike, manifest: str | os.PathLike,
                 config: SegmentConfig | None = None, info: str | os.PathLike | None = None,
                 source: str | None = None, speaker: str | None = None, language: str | None = None) -> dict:
    """Segment one recording into `out_dir` (written whole, atomically) and write its manifest; return it.

    `info` is the ingest stage's JSON (default: beside the audio, if present); it supplies source id,
    speaker and language unless they are given here.
    """
    t0 = time.perf_counter()
    audio = Path(audio)
    cfg = config or SegmentConfig()
    info_path = Path(info) if info else audio.with_suffix(".json")
    if info and not info_path.is_file():
        raise XttsflowError(f"segment: {info_path} (the ingest record of {audio}) does not exist — re-run ingest")
    meta = read_json(info_path) if info_path.is_file() else {}
    source = source or meta.get("source") or audio.stem
    sr = cfg.sample_rate
    if not audio.is_file():
        raise XttsflowError(f"segment: {audio} (source {source}) does not exist — run the ingest stage first")
    try:
        power, n_samples = measure(audio, sr)
        silent = None
        if cfg.method == "vad":
            from .vad import silent_frames

            silent = silent_frames(audio, len(power), cfg.vad_threshold)
        segments, dropped = plan(power, cfg, silent)
        records = _write_segments(audio, out_dir, source, segments, power, cfg)
    except XttsflowError as err:
        raise XttsflowError(f"segment: source {source} ({audio}): {err} — re-run its ingest or remove the "
                            "source from the config") from None

    voiced = power >= 10 ** (cfg.silence_thresh_dbfs / 10)
    result = {
        "source": source,
        "speaker": speaker or meta.get("speaker"),
        "language": language or meta.get("language"),
        "sample_rate": sr,
        "input": {"path": str(audio), "samples": n_samples, "probe": meta.get("probe")},
        "config": cfg.model_dump(),
        "segments": records,
        "dropped": [{**_times(d, sr), "reason": f"shorter than min_duration ({cfg.min_duration} s)"
                     " and no neighbour to merge with"} for d in dropped],
        "total_duration": round(n_samples / sr, 6),
        "speech_duration": round(int(voiced.sum()) / FRAMES_PER_S, 2),
        "segments_duration": round(sum(r["duration"] for r in records), 6),
    }
    write_json(manifest, result)
    took = time.perf_counter() - t0
    log.info("segment %s: %d segments (%.1f of %.1f s), %d dropped, %.0fx real time", source, len(records),
             result["segments_duration"], result["total_duration"], len(dropped),
             result["total_duration"] / max(took, 1e-9))
    if not records:
        log.warning("segment %s: %s", source, _why_empty(result, cfg))
    return result


def _why_empty(result: dict, cfg) -> str:
    """What was found when no segment was kept: too-short speech, or no speech at all."""
    dropped = result["dropped"]
    if dropped:
        seconds = sum(d["duration"] for d in dropped)
        return (f"no segment kept: the speech found ({len(dropped)} piece(s), {seconds:.1f} s) is shorter than "
                f"segment.min_duration ({cfg.min_duration} s) — lower min_duration, or add longer recordings")
    if result["speech_duration"] > 0:
        return (f"no segment kept: {result['speech_duration']:.1f} s of sound above {cfg.silence_thresh_dbfs} dBFS "
                "but no speech segment in it — check silence_thresh_dbfs")
    return (f"no speech found: the recording stays below {cfg.silence_thresh_dbfs} dBFS (silence-only, or "
            "segment.silence_thresh_dbfs too high for a quiet recording)")


def write_pcm16(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    """A plain 44-byte-header mono PCM WAV. (soundfile fsyncs on close: 10 ms a file, most of the stage's time.)"""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype("<i2", copy=False).tobytes())


def _times(span: Span, sr: int) -> dict:
    s, e = span.start * sr // FRAMES_PER_S, span.end * sr // FRAMES_PER_S
    return {"start": round(s / sr, 6), "end": round(e / sr, 6), "duration": round((e - s) / sr, 6)}


def _write_segments(audio: Path, out_dir, source: str, segments: list[Span], power: np.ndarray,
                    cfg: SegmentConfig) -> list[dict]:
    """Pass 2: decode again, and write every planned segment into a folder that replaces `out_dir` whole."""
    sr = cfg.sample_rate
    bounds = [(sp.start * sr // FRAMES_PER_S, sp.end * sr // FRAMES_PER_S) for sp in segments]
    with atomic_dir(out_dir) as tmp:
        blocks = decode_stream(audio, sr, block_samples(sr))
        try:
            records = [_write_one(tmp, f"{source}_{k + 1:04d}", span, samples, power, cfg)
                       for k, (span, samples) in enumerate(zip(segments, slices(blocks, bounds), strict=True))]
            for _ in blocks:  # read to the end so that a decode error late in the file is not missed
                pass
        finally:
            blocks.close()  # stops FFmpeg at once if anything above failed
    return records


def _write_one(folder: Path, seg_id: str, span: Span, samples: np.ndarray, power: np.ndarray,
               cfg: SegmentConfig) -> dict:
    """Normalise and write one segment; return its manifest record."""
    frames = power[span.start: span.end]
    voiced = frames >= 10 ** (cfg.silence_thresh_dbfs / 10)
    speech_power = float(frames[voiced].mean()) if voiced.any() else float(frames.mean())
    pcm, gain_db = finish(samples, speech_power, cfg)
    write_pcm16(folder / f"{seg_id}.wav", pcm, cfg.sample_rate)
    scaled = pcm.astype(np.float64) / 32768
    return {
        "id": seg_id, "file": f"{seg_id}.wav", **_times(span, cfg.sample_rate),
        "peak_dbfs": _db(float(np.max(np.abs(scaled))) ** 2),
        "rms_dbfs": _db(float(np.mean(scaled * scaled))),
        "gain_db": round(gain_db, 2),
        "speech_ratio": round(float(voiced.mean()), 4),
        "cut": span.end_cut, "start_cut": span.start_cut,
    }


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    defaults = SegmentConfig()
    p = cli.parser("segment", __doc__.splitlines()[0])
    p.add_argument("input", help="recording to segment (any format FFmpeg reads)")
    p.add_argument("out_dir", help="folder for the WAV segments (replaced whole)")
    p.add_argument("manifest", help="JSON manifest to write")
    p.add_argument("--info", help="ingest JSON with source/speaker/language (default: INPUT with .json, if present)")
    p.add_argument("--source", help="source id used in segment names (default: from --info, else INPUT's stem)")
    p.add_argument("--speaker")
    p.add_argument("--language")
    p.add_argument("--denoise", action="store_true",
                   help="first denoise INPUT (WAV or FLAC) with DeepFilterNet3 into INPUT's stem + .denoised.flac "
                        "beside it, and segment that (segment.denoise)")
    for name in SegmentConfig.model_fields:
        if name == "denoise":
            continue
        flag = {"min_duration": "--min", "max_duration": "--max", "silence_thresh_dbfs": "--thresh"}.get(name)
        names = [flag, "--" + name.replace("_", "-")] if flag else ["--" + name.replace("_", "-")]
        default = getattr(defaults, name)
        p.add_argument(*names, dest=name, type=type(default), default=default,
                       help=f"(default {default}; see config/schema.yaml)")
    args = p.parse_args(argv)
    setup_console()
    cfg = parse(SegmentConfig, {name: getattr(args, name) for name in SegmentConfig.model_fields})
    audio, info = Path(args.input), args.info
    if cfg.denoise:
        from .denoise import denoise_file

        # the ingest record (or else the name) of the original input names the source, not the denoised copy's
        info = info or (str(audio.with_suffix(".json")) if audio.with_suffix(".json").is_file() else None)
        args.source = args.source or (None if info else audio.stem)
        audio = denoise_file(audio, audio.with_name(audio.stem + ".denoised.flac"), source=args.source)["path"]
    result = segment_file(audio, args.out_dir, args.manifest, cfg, info=info, source=args.source,
                          speaker=args.speaker, language=args.language)
    print(f"{len(result['segments'])} segments in {args.out_dir}, manifest {args.manifest}")


if __name__ == "__main__":
    sys.exit(cli.run("segment", main))
