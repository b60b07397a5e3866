"""Audio-quality screen: DNSMOS P.835 (Microsoft's ONNX model, shipped in the `speechmos` wheel) and an SNR
estimate for every segment of a source -> quality/{source}.json, which the dataset's `quality` filter reads.

DNSMOS P.835 predicts the listening-test scores of speech (SIG), background (BAK) and overall quality
(OVRL, 1-5) from 16 kHz audio, on 9.01 s windows one second apart (shorter clips are repeated to fill one),
mapped through the published polynomial fits; Emilia-Pipe keeps clips with OVRL >= 3.0. Only the
`sig_bak_ovr.onnx` file of the wheel is used, run with onnxruntime (the wheel's own module imports librosa
and runs the P.808 model too, which the screen does not need). Both are MIT-licensed.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from .atomic import read_json, write_json
from .errors import XttsflowError

log = logging.getLogger(__name__)

DNSMOS_RATE = 16000
WINDOW_S = 9.01  # the model's input length
#: Polynomial fits from raw model outputs to P.835 MOS (DNSMOS P.835, non-personalised; as in speechmos).
FITS = {"sig": (-0.08397278, 1.22083953, 0.0052439), "bak": (-0.13166888, 1.60915514, -0.39604546),
        "ovrl": (-0.06766283, 1.11546468, 0.04602535)}


def model_path() -> Path:
    """sig_bak_ovr.onnx inside the installed speechmos wheel (found without importing its librosa code)."""
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise XttsflowError("quality: the speechmos package is not installed — install the pinned requirements "
                            "(requirements.lock), or set dataset.min_dnsmos_ovrl and dataset.min_snr_db to null")
    path = Path(next(iter(spec.submodule_search_locations))) / "dnsmos_models" / "sig_bak_ovr.onnx"
    if not path.is_file():
        raise XttsflowError(f"quality: {path} is missing from the speechmos wheel — reinstall speechmos")
    return path


class Dnsmos:
    """One onnxruntime session of DNSMOS P.835, reused for every clip."""

    def __init__(self, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path()), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, samples: np.ndarray) -> dict[str, float]:
        """SIG, BAK and OVRL of mono float samples at 16 kHz (the mean over its windows)."""
        need = int(WINDOW_S * DNSMOS_RATE)
        audio = np.asarray(samples, np.float32)
        if audio.size == 0:
            raise ValueError("no samples")
        if audio.size < need:  # one window of the clip repeated (Microsoft's script slides over the doubled
            audio = np.tile(audio, math.ceil(need / audio.size))[:need]  # clip: 5 windows of a 7 s one, 3.6x the time
        hops = int(np.floor(audio.size / DNSMOS_RATE) - WINDOW_S) + 1
        windows = np.stack([audio[k * DNSMOS_RATE: k * DNSMOS_RATE + need] for k in range(max(1, hops))])
        raw = np.stack([self.session.run(None, {self.input: w[np.newaxis, :]})[0][0] for w in windows])
        scores = {}
        for k, name in enumerate(("sig", "bak", "ovrl")):
            scores[name] = round(float(np.mean(np.polyval(FITS[name], raw[:, k]))), 3)
        return scores


def snr_db(samples: np.ndarray, sample_rate: int) -> float:
    """Speech-to-background ratio from 20 ms frame energies: the loud 10% against the quiet 10%.

    Inside a segment the quiet frames are the pauses between words, so music or noise under the speech
    shows as a raised floor; clean speech over digital silence is capped at 60 dB.
    """
    frame = max(1, sample_rate // 50)
    n = samples.size // frame
    if n < 10:
        return 0.0
    power = np.mean(np.square(samples[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    loud, quiet = np.percentile(power, 90), np.percentile(power, 10)
    noise = max(quiet, loud * 1e-6, 1e-12)
    return round(float(min(60.0, 10 * math.log10(max(loud - noise, 1e-12) / noise))), 2)


def score_source(manifest: str | os.PathLike, segments_dir: str | os.PathLike, out: str | os.PathLike,
                 threads: int = 1) -> dict:
    """DNSMOS and SNR of every segment of one source -> `out` (atomic JSON); returns the record."""
    import soundfile as sf

    from .audio import resample

    manifest, segments_dir = Path(manifest), Path(segments_dir)
    info = read_json(manifest)
    source = info.get("source", manifest.stem)
    segments = info.get("segments", [])
    start = time.perf_counter()
    model = Dnsmos(threads) if segments else None
    clips = {}
    for seg in segments:
        path = segments_dir / seg["file"]
        try:
            samples, rate = sf.read(path, dtype="float32", always_2d=False)
        except (RuntimeError, sf.LibsndfileError) as err:
            raise XttsflowError(f"quality: {path} (source {source}) is unreadable ({err}) — "
                                "re-run its segment job") from None
        if samples.ndim > 1:
            samples = samples.mean(axis=1)
        clips[seg["id"]] = {**model(resample(samples, rate, DNSMOS_RATE)), "snr_db": snr_db(samples, rate)}
    took = time.perf_counter() - start
    audio_s = sum(float(s.get("duration", 0.0)) for s in segments)
    record = {"source": source, "model": "DNSMOS P.835 sig_bak_ovr.onnx (speechmos)", "clips": clips,
              "stats": {"segments": len(segments), "audio_seconds": round(audio_s, 3), "seconds": round(took, 3)}}
    write_json(out, record)
    log.info("quality %s: %d segments, %.1f s of audio in %.1f s", source, len(segments), audio_s, took)
    return record
