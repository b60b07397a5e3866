"""Audio in the formats clients ask for: WAV and FLAC (soundfile), MP3, Ogg Opus and AAC (FFmpeg), raw
16-bit PCM; and the pieces of a WAV or PCM stream sent while it is still being generated."""

from __future__ import annotations

import functools
import io
import os
import struct
import subprocess

import numpy as np
import soundfile as sf

from .audio import _last_line, _tool
from .errors import XttsflowError

#: name -> (media type, FFmpeg encoder, FFmpeg muxer, bit rate); None: written without FFmpeg.
FORMATS = {
    "wav": ("audio/wav", None, None, None),
    "pcm": ("audio/pcm", None, None, None),
    "flac": ("audio/flac", None, None, None),
    "mp3": ("audio/mpeg", "libmp3lame", "mp3", "96k"),
    "opus": ("audio/ogg", "libopus", "ogg", "48k"),
    "aac": ("audio/aac", "aac", "adts", "96k"),
}
#: Formats sent as they are generated: a byte stream that is valid at every chunk boundary.
STREAMABLE = ("wav", "pcm")
#: A RIFF/data size that means "until the end of the stream" (the size is unknown when the header goes out).
_UNKNOWN_SIZE = 0xFFFFFFFF


def int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as 16-bit integers (x 32768, rounded, clipped). Every format here converts
    through this one function, so a streamed WAV and the whole file hold the same sample values."""
    return np.clip(np.rint(np.asarray(samples, np.float64) * 32768.0), -32768, 32767).astype("<i2")


def pcm16(samples: np.ndarray) -> bytes:
    """16-bit signed little-endian samples (OpenAI's `pcm`)."""
    return int16(samples).tobytes()


def wav_stream_header(sample_rate: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header for a stream of unknown length (FFmpeg, browsers and libsndfile read to EOF)."""
    block = 2 * channels
    return (b"RIFF" + struct.pack("<I", _UNKNOWN_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
            + b"data" + struct.pack("<I", _UNKNOWN_SIZE))


@functools.cache
def ffmpeg_encoders() -> frozenset[str]:
    """The audio encoders this machine's FFmpeg has (empty without FFmpeg)."""
    try:
        out = subprocess.run([_tool("ffmpeg"), "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=60).stdout
    except (XttsflowError, OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split()[1] for line in out.splitlines() if line.startswith(" A"))


def available(fmt: str) -> bool:
    encoder = FORMATS[fmt][1]
    return encoder is None or encoder in ffmpeg_encoders()


def media_type(fmt: str) -> str:
    return FORMATS[fmt][0]


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Mono float audio as a complete file (or raw PCM) in `fmt`."""
    if fmt == "pcm":
        return pcm16(samples)
    if fmt in ("wav", "flac"):
        buf = io.BytesIO()
        sf.write(buf, int16(samples), sample_rate, subtype="PCM_16", format=fmt.upper())  # integers: stored as they are
        return buf.getvalue()
    return _ffmpeg(["-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0"], pcm16(samples), fmt)


def encode_file(path: str | os.PathLike, fmt: str, bitrate: str | None = None) -> bytes:
    """Any audio file FFmpeg reads, re-encoded to mono `fmt` (the review page embeds its clips so)."""
    return _ffmpeg(["-i", os.fspath(path), "-vn", "-ac", "1"], None, fmt, bitrate)


def _ffmpeg(input_args: list[str], data: bytes | None, fmt: str, bitrate: str | None = None) -> bytes:
    _, encoder, muxer, default_rate = FORMATS[fmt]
    if encoder not in ffmpeg_encoders():
        raise XttsflowError(f"this FFmpeg has no {encoder} encoder for {fmt} — use wav, flac or pcm, or install an "
                            "FFmpeg built with it")
    cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error", *input_args, "-c:a", encoder, "-b:a", bitrate or default_rate,
           "-f", muxer, "pipe:1"]
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=600)
    if proc.returncode != 0 or not proc.stdout:
        raise XttsflowError(f"FFmpeg could not encode {fmt}: {_last_line(proc.stderr)}")
    return proc.stdout
