"""Silero VAD for `segment.method: vad`: which 10 ms frames hold no speech, for noisy sources.

The silero-vad package ships its model (TorchScript, run on one CPU thread so results are reproducible;
about 100x real time); the recording is streamed through it at 16 kHz in the model's 32 ms windows.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .audio import decode_stream

VAD_RATE = 16000
WINDOW = 512  # samples per model call at 16 kHz (32 ms), fixed by the model
HYSTERESIS = 0.15  # speech ends only below threshold - 0.15, as silero's own get_speech_timestamps does


def speech_probabilities(path: str | os.PathLike) -> np.ndarray:
    """Silero's speech probability for every 32 ms window of the recording."""
    import torch
    from silero_vad import load_silero_vad

    with warnings.catch_warnings():  # silero-vad 6.2 still uses importlib.resources.path
        warnings.simplefilter("ignore", DeprecationWarning)
        model = load_silero_vad(onnx=False)
    probs = []
    with torch.no_grad():
        for block in decode_stream(path, VAD_RATE, WINDOW * 625):  # 20 s blocks
            if len(block) % WINDOW:
                block = np.pad(block, (0, WINDOW - len(block) % WINDOW))
            windows = torch.from_numpy(block.reshape(-1, WINDOW).copy())
            # The model is recurrent: one window after the other, carrying its state along.
            probs.extend(float(model(windows[k: k + 1], VAD_RATE)) for k in range(len(windows)))
    return np.asarray(probs, np.float32)


def silent_frames(path: str | os.PathLike, n_frames: int, threshold: float = 0.5) -> np.ndarray:
    """A bool per 10 ms frame: True where Silero hears no speech (with silero's hysteresis)."""
    probs = speech_probabilities(path)
    speech = np.zeros(len(probs), bool)
    on = False
    for k, p in enumerate(probs.tolist()):
        on = p >= threshold or (on and p >= threshold - HYSTERESIS)
        speech[k] = on
    # Each 10 ms frame takes the decision of the 32 ms window holding its centre.
    window = (np.arange(n_frames) * 160 + 80) // WINDOW
    return ~speech[np.minimum(window, len(speech) - 1)] if len(speech) else np.ones(n_frames, bool)
