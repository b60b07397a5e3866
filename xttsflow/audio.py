"""Audio I/O through FFmpeg: probe, decode (whole or streamed) and 16-bit WAV writing.

FFmpeg decodes every format users bring (mp3, m4a, ogg/opus, flac, wav, video containers) the same
way; decoding straight to mono float32 at the target rate keeps resampling in one place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from .atomic import atomic_path
from .errors import XttsflowError

AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".m4a", ".ogg", ".opus")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise XttsflowError(f"{name} is not installed — install FFmpeg (Debian: apt-get install ffmpeg)")
    return found


def probe(path: str | os.PathLike) -> dict:
    """Duration, sample rate, channels and codec of the first audio stream of `path`."""
    path = Path(path)
    if not path.is_file():
        raise XttsflowError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise XttsflowError(f"{path}: the file is empty (0 bytes) — replace it or remove it from sources")
    proc = subprocess.run(
        [_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
         "-select_streams", "a", "--", str(path)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown error"
        raise XttsflowError(f"{path} is not audio (ffprobe: {reason}) — replace the file or remove it from sources")
    info = json.loads(proc.stdout or "{}")
    streams = info.get("streams") or []
    if not streams:
        raise XttsflowError(f"{path} has no audio stream — replace the file or remove it from sources")
    stream, fmt = streams[0], info.get("format", {})
    duration = stream.get("duration") or fmt.get("duration")
    return {
        "duration": float(duration) if duration not in (None, "N/A") else None,
        "sample_rate": int(stream.get("sample_rate", 0)),
        "channels": int(stream.get("channels", 0)),
        "codec": stream.get("codec_name"),
        "format": fmt.get("format_name"),
        "bit_rate": int(fmt["bit_rate"]) if fmt.get("bit_rate", "N/A") != "N/A" else None,
        "size_bytes": path.stat().st_size,
    }


def _decode_cmd(path: Path, sample_rate: int) -> list[str]:
    return [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1",
            "-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", "-"]


def decode(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """The whole file as mono float32 samples at `sample_rate`."""
    path = Path(path)
    proc = subprocess.run(_decode_cmd(path, sample_rate), capture_output=True)
    if proc.returncode != 0:
        raise XttsflowError(f"{path}: FFmpeg could not decode it ({_last_line(proc.stderr)})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def decode_stream(path: str | os.PathLike, sample_rate: int, block_samples: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks of `block_samples` (the last may be shorter): bounded memory for long files."""
    path = Path(path)
    proc = subprocess.Popen(_decode_cmd(path, sample_rate), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        nbytes = block_samples * 4
        while True:
            buf = proc.stdout.read(nbytes)
            if not buf:
                break
            yield np.frombuffer(buf[: len(buf) - len(buf) % 4], dtype=np.float32)
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise XttsflowError(f"{path}: FFmpeg could not decode it ({_last_line(err)})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def transcode_flac(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Losslessly re-encode any audio file to FLAC (original rate and channels), atomically."""
    src = Path(src)
    with atomic_path(dest) as tmp:
        proc = subprocess.run(
            [_tool("ffmpeg"), "-nostdin", "-v", "error", "-y", "-i", str(src), "-vn", "-map", "0:a:0",
             "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
             "-c:a", "flac", "-f", "flac", str(tmp)],
            capture_output=True,
        )
        if proc.returncode != 0:
            raise XttsflowError(f"{src}: FFmpeg could not decode it ({_last_line(proc.stderr)})")


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM WAV, atomically."""
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A WAV/FLAC file as float32 (mono-mixed) and its rate, without resampling."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 samples from `rate` to `target` Hz (soxr: what librosa.resample calls, without its import)."""
    if rate == target:
        return samples
    import soxr

    return soxr.resample(samples, rate, target).astype(np.float32)


def read_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Any audio file as mono float32 at `sample_rate`: soundfile for WAV/FLAC, FFmpeg for what it cannot read."""
    try:
        samples, rate = read_wav(path)
    except (RuntimeError, sf.LibsndfileError):
        return decode(path, sample_rate)
    if not samples.size:
        raise XttsflowError(f"{path}: the file holds no samples")
    return resample(samples, rate, sample_rate)


def _last_line(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"
