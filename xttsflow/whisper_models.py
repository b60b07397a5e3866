"""Whisper models by name, fetched through xttsflow.hub: faster-whisper from the hub, openai-whisper from its URLs."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import XttsflowError
from .hub import Remote, fetch_all, hub_snapshot

#: openai-whisper's download host; XTTSFLOW_WHISPER_MIRROR replaces it (a mirror, or a stand-in in tests).
WHISPER_HOST = "https://openaipublic.azureedge.net"
#: What faster-whisper itself fetches of a model repository (faster_whisper.utils.download_model).
FASTER_WHISPER_FILES = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*")


def faster_whisper_model(name: str) -> str:
    """A faster-whisper model name (large-v3, ...) or hub repository id -> its folder in the hub cache."""
    from faster_whisper.utils import _MODELS

    repo_id = name if "/" in name else _MODELS.get(name)
    if repo_id is None:
        raise XttsflowError(f"transcribe: {name!r} is not a faster-whisper model name (one of "
                            f"{', '.join(_MODELS)}), a hub repository (org/name) or a local folder")
    return str(hub_snapshot(repo_id, FASTER_WHISPER_FILES, what=f"transcribe: faster-whisper {name}",
                            required=("model.bin", "config.json")))


def whisper_checkpoint(name: str, root: str | Path | None = None) -> Path:
    """openai-whisper's checkpoint `name` (tiny ... large-v3, turbo) in its cache, fetched from its own URLs.

    openai-whisper's own download keeps nothing of an interrupted file; this one resumes it.
    """
    import whisper

    url = whisper._MODELS[name]
    digest = url.split("/")[-2]
    mirror = os.environ.get("XTTSFLOW_WHISPER_MIRROR")
    if mirror:
        url = mirror.rstrip("/") + url[len(WHISPER_HOST):]
    root = Path(root or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "whisper"))
    dest = root / os.path.basename(url)
    fetch_all([Remote(dest.name, url, dest, None, f"sha256:{digest}")], f"transcribe: openai-whisper {name}")
    return dest
