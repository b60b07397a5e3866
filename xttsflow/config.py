"""Checks the JSON schema cannot express (one field against another), run before any job starts."""

from __future__ import annotations

from . import TRAIN_SAMPLE_RATE, XTTS_MAX_WAV_SAMPLES
from .errors import XttsflowError


def _ordered(section: dict, name: str, low: str, high: str) -> None:
    if low in section and high in section and not section[low] < section[high]:
        raise XttsflowError(
            f"config: {name}.{low} ({section[low]}) must be smaller than {name}.{high} ({section[high]})"
        )


def check_config(config: dict) -> None:
    """Raise XttsflowError naming the keys when options contradict each other."""
    from .segment import validate_segment_config  # imported here: the segment module pulls in numpy I/O

    validate_segment_config(config.get("segment", {}))
    dataset = config.get("dataset", {})
    _ordered(dataset, "dataset", "min_duration", "max_duration")
    xtts_limit = XTTS_MAX_WAV_SAMPLES / TRAIN_SAMPLE_RATE
    if dataset.get("max_duration", 0) > xtts_limit:
        raise XttsflowError(
            f"config: dataset.max_duration ({dataset['max_duration']} s) is above what XTTS trains on "
            f"({xtts_limit:.2f} s = {XTTS_MAX_WAV_SAMPLES} samples at {TRAIN_SAMPLE_RATE} Hz): its trainer "
            "would silently drop those clips — lower it"
        )
