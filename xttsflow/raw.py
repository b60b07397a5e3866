"""The ingest stage's output for one source: `raw/{source}.flac` (lossless) and `raw/{source}.json` (what and how).

Written the same way for local files (xttsflow.ingest) and URL downloads (xttsflow.download): re-encoded
to FLAC, checked for truncation, and the record written only once the FLAC is whole.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import soundfile as sf

from .atomic import atomic_path, write_json
from .audio import transcode_flac
from .errors import XttsflowError

log = logging.getLogger(__name__)


def write_raw(media_path: Path, media: dict, flac: str | Path, info: str | Path, source: dict,
              how: dict, where: str) -> dict:
    """Re-encode `media_path` to FLAC, check that nothing was lost, write the JSON record; all or nothing."""
    flac, info = Path(flac), Path(info)
    try:
        with atomic_path(flac) as tmp:
            try:
                transcode_flac(media_path, tmp)
                out = _flac_facts(tmp)
            except XttsflowError as err:
                raise XttsflowError(f"{where}: {err} — replace the file or remove it from sources") from None
            _check_complete(media_path, media, out, where)
        record = {
            "source": source["id"],
            "kind": source["kind"],
            "location": source["location"],
            "speaker": source["speaker"],
            "language": source["language"],
            "probe": media,
            "ingest": {**how, "flac": {k: out[k] for k in ("duration", "sample_rate", "channels", "size_bytes")}},
        }
        write_json(info, record)
    except BaseException:
        # A FLAC without its record would look complete to the next stage: remove both.
        flac.unlink(missing_ok=True)
        info.unlink(missing_ok=True)
        raise
    log.info("%s: %.1f s, %d Hz, %d ch (%s) -> %s", where, out["duration"], out["sample_rate"],
             out["channels"], media.get("codec"), flac)
    return record


def _flac_facts(path: Path) -> dict:
    """Duration, rate and channels from the FLAC header (exact sample count; no extra ffprobe run)."""
    info = sf.info(str(path))
    return {"duration": info.frames / info.samplerate if info.samplerate else 0.0,
            "sample_rate": info.samplerate, "channels": info.channels, "size_bytes": path.stat().st_size}


def _check_complete(path: Path, media: dict, out: dict, where: str) -> None:
    """Refuse input that decodes to nothing, or to clearly less than its header declares (truncated)."""
    decoded = out.get("duration") or 0.0
    if decoded <= 0:
        raise XttsflowError(f"{where}: holds no decodable audio — replace the file or remove it from sources")
    declared = media.get("duration")
    if declared and declared - decoded > max(0.5, 0.02 * declared) and not _duration_is_estimate(path):
        raise XttsflowError(
            f"{where}: looks truncated or damaged — its header declares {declared:.1f} s but only "
            f"{decoded:.1f} s decode; download or export it again (or remove it from sources)"
        )


def _duration_is_estimate(path: Path) -> bool:
    """True when FFmpeg guessed the duration from the bitrate (VBR MP3 without a header): no proof of loss."""
    exe = shutil.which("ffprobe")
    if not exe:
        return False
    proc = subprocess.run([exe, "-v", "warning", "-show_entries", "format=duration", "-of", "json", "--",
                           str(path)], capture_output=True, text=True)
    return "Estimating duration from bitrate" in proc.stderr
