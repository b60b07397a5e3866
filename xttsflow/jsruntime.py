"""The JavaScript runtime yt-dlp needs for YouTube (since yt-dlp 2025.11), handed to it explicitly.

YouTube's players hide their stream URLs behind JavaScript challenges; yt-dlp solves them with the
`yt-dlp-ejs` scripts run by an external runtime. Without one it falls back to a client that often offers
no audio at all ("Requested format is not available"). The lock installs both pieces (`yt-dlp-ejs`,
`deno`); we pass Deno's path inside this environment to yt-dlp, so Snakemake jobs, conda envs and SLURM
jobs find it whatever their PATH is.
"""

from __future__ import annotations

import functools
import shutil

from .errors import XttsflowError

#: The runtimes yt-dlp can drive, as named in its `--js-runtimes` option.
RUNTIMES = ("deno", "node", "bun", "quickjs")


@functools.cache
def _installed_deno() -> str | None:
    """The Deno binary that the `deno` PyPI package put into this environment, if any."""
    try:
        from deno import find_deno_bin
    except ImportError:
        return None
    try:
        return find_deno_bin()
    except FileNotFoundError:
        return None


def runtime_option(spec: str) -> dict:
    """yt-dlp's `js_runtimes` option for `ingest.js_runtime` (auto, none, RUNTIME or RUNTIME:PATH)."""
    if spec == "none":
        return {}
    if spec == "auto":
        deno = _installed_deno() or shutil.which("deno")
        return {"deno": {"path": deno}} if deno else {}
    name, _, path = spec.partition(":")
    if name not in RUNTIMES:
        raise XttsflowError(f"ingest.js_runtime: unknown runtime {name!r} — use auto, none, or one of "
                            f"{', '.join(RUNTIMES)} (optionally RUNTIME:PATH)")
    return {name: {"path": path or shutil.which(name)}}


def is_youtube(url: str) -> bool:
    """True when one of yt-dlp's YouTube extractors handles `url` (videos, shorts, playlists, channels)."""
    from yt_dlp.extractor import gen_extractor_classes

    return any(ie.ie_key().startswith("Youtube") and ie.suitable(url) for ie in gen_extractor_classes())


def youtube_problem(ydl) -> str | None:
    """Why `ydl` (a yt_dlp.YoutubeDL) cannot solve YouTube's challenges, or None when it can.

    The same check yt-dlp makes before it picks YouTube clients: a challenge provider whose runtime is
    found and supported; then whether that provider finds the challenge-solver scripts.
    """
    ie = ydl.get_info_extractor("Youtube")
    ie.initialize()
    providers = [p for p in ie._jsc_director.providers.values() if p.is_available()]
    if not providers:
        wanted = ", ".join(f"{name}{':' + c['path'] if c.get('path') else ''}"
                           for name, c in ydl.params.get("js_runtimes", {}).items()) or "none"
        return (f"yt-dlp finds no JavaScript runtime (configured: {wanted}), which YouTube needs — "
                "reinstall the environment (`make install` installs Deno) or set ingest.js_runtime")
    try:
        providers[0]._lib_script, providers[0]._core_script  # noqa: B018 (loading is the check)
    except Exception as err:  # yt-dlp raises its own provider errors here
        return (f"yt-dlp has a JavaScript runtime but no usable challenge-solver scripts ({err}) — install "
                "yt-dlp-ejs at the version the lock pins")
    return None


def require_youtube_support(ydl, url: str, where: str) -> None:
    """Refuse a YouTube URL in one line when yt-dlp could only fetch a storyboard of it."""
    if is_youtube(url):
        problem = youtube_problem(ydl)
        if problem:
            raise XttsflowError(f"{where}: {problem}")
