"""Speaker embeddings (Resemblyzer) per segment, and each segment's similarity to its speaker's centroid.

Interviews and podcasts mix voices; clips far from the speaker's centroid are the interviewer's lines.
Resemblyzer's weights ship inside its wheel, so this works offline.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from . import cli, paths
from .atomic import atomic_path, read_json
from .audio import read_wav, resample
from .devices import resolve_device
from .errors import XttsflowError

log = logging.getLogger(__name__)

EMBEDDING_SIZE = 256
#: Resemblyzer's input rate.
ENCODER_SAMPLE_RATE = 16000
#: Below this much voiced audio the encoder's 1.6 s window is mostly padding; embed the untrimmed clip.
MIN_VOICED_S = 0.5


@functools.lru_cache(maxsize=2)
def _encoder(device: str):
    # Imported lazily: resemblyzer pulls in librosa and webrtcvad, which the CLI help does not need.
    from resemblyzer import VoiceEncoder

    return VoiceEncoder(device=device, verbose=False)


def _load(path: Path) -> np.ndarray:
    """A clip as Resemblyzer's preprocessed 16 kHz waveform (volume-normalised, long silences trimmed)."""
    try:
        wav, rate = read_wav(path)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise XttsflowError(f"speaker: {path} is not a readable audio file ({err}) — re-run the segment stage") from err
    return prepare(wav, rate)


def prepare(wav: np.ndarray, rate: int) -> np.ndarray:
    """Samples at any rate as the encoder's input: 16 kHz, volume-normalised, long silences trimmed."""
    from resemblyzer import preprocess_wav

    if not np.any(wav):
        return wav[:0]
    wav = resample(wav, rate, ENCODER_SAMPLE_RATE)
    trimmed = preprocess_wav(wav)
    return trimmed if len(trimmed) >= MIN_VOICED_S * ENCODER_SAMPLE_RATE else _louder(wav)


def _louder(wav: np.ndarray) -> np.ndarray:
    """16 kHz samples raised to Resemblyzer's target loudness (its preprocessing, without the trim)."""
    from resemblyzer.audio import normalize_volume
    from resemblyzer.hparams import audio_norm_target_dBFS

    return normalize_volume(wav, audio_norm_target_dBFS, increase_only=True)


def embed_prepared(wavs: list[np.ndarray], device: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """embed_files_and_windows for waveforms already made by `prepare` (pieces cut in memory)."""
    return _embed_batch(_encoder(resolve_device(device)), wavs)


def embed_files(paths: Sequence[str | os.PathLike], device: str = "auto", threads: int | None = None,
                clips_per_batch: int = 32) -> np.ndarray:
    """L2-normalised speaker embeddings [n, 256] float32; an all-silent clip gets a zero row."""
    return embed_files_and_windows(paths, device, threads, clips_per_batch)[0]


def embed_files_and_windows(paths: Sequence[str | os.PathLike], device: str = "auto", threads: int | None = None,
                            clips_per_batch: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings [n, 256], window embeddings [m, 256], the clip index of each window [m]).

    The windows are Resemblyzer's 1.6 s partials, which its clip embedding averages: a clip that holds
    two voices has windows far from its speaker even when their mean is close.
    """
    if not paths:
        return (np.zeros((0, EMBEDDING_SIZE), np.float32), np.zeros((0, EMBEDDING_SIZE), np.float32),
                np.zeros(0, np.int32))
    if threads:
        import torch

        torch.set_num_threads(threads)
    encoder = _encoder(resolve_device(device))
    out = np.zeros((len(paths), EMBEDDING_SIZE), np.float32)
    windows, owners = [], []
    for start in range(0, len(paths), clips_per_batch):
        wavs = [_load_or_empty(Path(p)) for p in paths[start:start + clips_per_batch]]
        out[start:start + len(wavs)], partials, owner = _embed_batch(encoder, wavs)
        windows.append(partials)
        owners.append(owner + start)
    return out, np.concatenate(windows).astype(np.float32), np.concatenate(owners).astype(np.int32)


def embed_windows_at(wav: np.ndarray, rate: int, centres: Sequence[float], device: str = "auto") -> np.ndarray:
    """Unit embeddings [len(centres), 256] of 1.6 s windows of the untrimmed clip centred on these times (s),
    each moved inside the clip: *where* a voice speaks in a segment, which the trimmed partials cannot say."""
    import torch
    from resemblyzer import audio
    from resemblyzer.hparams import mel_window_step, partials_n_frames

    wav = _louder(resample(wav, rate, ENCODER_SAMPLE_RATE))
    mel = audio.wav_to_mel_spectrogram(wav)  # [frames, channels], one frame per mel_window_step ms
    if len(mel) < partials_n_frames:
        mel = np.pad(mel, ((0, partials_n_frames - len(mel)), (0, 0)))
    frames_per_s = 1000 / mel_window_step
    starts = [min(max(round(c * frames_per_s) - partials_n_frames // 2, 0), len(mel) - partials_n_frames)
              for c in centres]
    encoder = _encoder(resolve_device(device))
    with torch.no_grad():
        batch = torch.from_numpy(np.stack([mel[s:s + partials_n_frames] for s in starts])).to(encoder.device)
        return encoder(batch).cpu().numpy()


def _load_or_empty(path: Path) -> np.ndarray:
    """An unreadable clip gets a zero row (the dataset stage then counts it as an outlier), not a failed job."""
    try:
        return _load(path)
    except XttsflowError as err:
        log.warning("%s", err)
        return np.zeros(0, np.float32)


def _embed_batch(encoder, wavs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """VoiceEncoder.embed_utterance for many clips at once: all their 1.6 s partials in one LSTM pass (~3x faster)."""
    import torch
    from resemblyzer import audio

    mels, owner = [], []
    for i, wav in enumerate(wavs):
        if not wav.size:
            continue
        wav_slices, mel_slices = encoder.compute_partial_slices(len(wav), rate=1.3, min_coverage=0.75)
        if wav_slices[-1].stop >= len(wav):
            wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
        mel = audio.wav_to_mel_spectrogram(wav)
        mels += [mel[s] for s in mel_slices]
        owner += [i] * len(mel_slices)
    out = np.zeros((len(wavs), EMBEDDING_SIZE), np.float32)
    if not mels:
        return out, np.zeros((0, EMBEDDING_SIZE), np.float32), np.zeros(0, np.int32)
    with torch.no_grad():
        partials = encoder(torch.from_numpy(np.array(mels)).to(encoder.device)).cpu().numpy()
    owner = np.array(owner, np.int32)
    for i in np.unique(owner):
        mean = partials[owner == i].mean(axis=0)
        out[i] = mean / np.linalg.norm(mean)
    return out, partials, owner


def centroid_similarity(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Cosine similarity of each row to the centroid, the centroid recomputed once without rows below threshold."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be [n, dim], got shape {emb.shape}")
    if len(emb) == 0:
        return np.zeros(0, np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)  # zero rows score 0
    similarity = unit @ _unit(unit[norms[:, 0] > 0].mean(axis=0) if np.any(norms > 0) else unit[0])
    inliers = (similarity >= threshold) & (norms[:, 0] > 0)
    # One refit without the outliers: a minority intruder pulls the first centroid towards itself.
    if inliers.any() and not inliers.all():
        similarity = unit @ _unit(unit[inliers].mean(axis=0))
    return similarity.astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def embed_reference(path: str | os.PathLike, device: str = "auto") -> np.ndarray:
    """The unit embedding [256] of a source's reference clip (the target voice); a clear error if it is no use."""
    path = Path(path)
    try:
        wav = _load(path)
    except XttsflowError:
        raise XttsflowError(f"speaker: reference {path} is not a readable audio file — point `reference:` at a "
                            "wav/flac/mp3 clip of the target voice") from None
    if len(wav) < MIN_VOICED_S * ENCODER_SAMPLE_RATE or not np.any(wav):
        raise XttsflowError(f"speaker: reference {path} holds under {MIN_VOICED_S} s of audio — give a few "
                            "seconds of the target voice")
    embedding = embed_files([path], device=device)[0]
    if not np.any(embedding):
        raise XttsflowError(f"speaker: reference {path} has no voice in it — give a clip of the target voice")
    return embedding


def embed_source(manifest: str | os.PathLike, segments_dir: str | os.PathLike, out: str | os.PathLike,
                 device: str = "auto", threads: int | None = None, reference: str | os.PathLike | None = None) -> dict:
    """Embed every segment of one source (from its segments manifest) into `out` (.npz with ids, embeddings,
    and where the source pins its target with a `reference` clip, that clip's embedding)."""
    manifest, segments_dir = Path(manifest), Path(segments_dir)
    # First: a bad reference fails this source's job before minutes of embedding
    pinned = None if reference is None else embed_reference(reference, device)
    info = read_json(manifest)
    segments = info.get("segments", [])
    missing = [s["file"] for s in segments if not (segments_dir / s["file"]).is_file()]
    if missing:
        raise XttsflowError(f"speaker: {len(missing)} segment file(s) listed in {manifest} are missing from "
                            f"{segments_dir} (first: {missing[0]}) — delete {manifest} and re-run the segment stage")
    if segments:
        _encoder(resolve_device(device))  # load (and import) outside the throughput figure
    start = time.perf_counter()
    embeddings, windows, owner = embed_files_and_windows([segments_dir / s["file"] for s in segments], device=device,
                                                         threads=threads)
    seconds = time.perf_counter() - start
    audio_s = sum(float(s.get("duration", 0.0)) for s in segments)
    log.info("speaker: %s: %d segments (%.1f s of audio) embedded in %.1f s (%.0fx real time)",
             info.get("source", manifest.stem), len(segments), audio_s, seconds, audio_s / max(seconds, 1e-9))
    write_embeddings(out, [s["id"] for s in segments], embeddings, windows, owner, reference=pinned)
    return {"segments": len(segments), "seconds": seconds}


def write_embeddings(path: str | os.PathLike, ids: Sequence[str], embeddings: np.ndarray,
                     windows: np.ndarray | None = None, window_owner: np.ndarray | None = None,
                     reference: np.ndarray | None = None) -> None:
    """The .npz the dataset stage reads (ids: str array, embeddings: [n, 256] float32, and where given each
    clip's 1.6 s window embeddings: windows [m, 256] with window_owner [m], the row of their clip, and the
    source's reference clip: reference [256]), atomically."""
    extra = {} if windows is None else {"windows": np.asarray(windows, np.float32),
                                        "window_owner": np.asarray(window_owner, np.int32)}
    if reference is not None:
        extra["reference"] = np.asarray(reference, np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, ids=np.array(list(ids), dtype=str), embeddings=np.asarray(embeddings, np.float32), **extra)


def read_windows(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Each clip's window embeddings [k, 256] (empty where the file has none: made before they were kept)."""
    with np.load(path, allow_pickle=False) as data:
        if "windows" not in data:
            return {}
        ids, windows, owner = [str(i) for i in data["ids"]], data["windows"], data["window_owner"]
    return {ids[i]: windows[owner == i] for i in np.unique(owner)}


def read_reference(path: str | os.PathLike) -> np.ndarray | None:
    """The source's reference embedding [256], or None where the source pins no target."""
    with np.load(path, allow_pickle=False) as data:
        return data["reference"].astype(np.float32) if "reference" in data else None


def read_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            return [str(i) for i in data["ids"]], data["embeddings"].astype(np.float32)
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # numpy's words for an empty/cut file
        raise XttsflowError(paths.damaged(path, f"not the speaker embeddings .npz: {err}")) from None


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser("speaker", "Embed one source's segments with Resemblyzer.")
    parser.add_argument("manifest", help="segments/{source}.json")
    parser.add_argument("segments_dir", help="segments/{source}/")
    parser.add_argument("out", help="embeddings/{source}.npz")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    setup_console()
    embed_source(args.manifest, args.segments_dir, args.out, device=args.device)


if __name__ == "__main__":
    sys.exit(cli.run("speaker", main))
