"""Named voices: the fine-tuned speaker's conditioning stored in the export's speakers_xtts.pth.

XTTS conditions on a speaker through two tensors, the GPT conditioning latents (`gpt_cond_latent`,
[1, 32, channels]) and the HiFi-GAN speaker embedding (`speaker_embedding`, [1, 512, 1]). coqui-tts reads
`speakers_xtts.pth` as {name: {"gpt_cond_latent": ..., "speaker_embedding": ...}} (its SpeakerManager;
`Xtts.synthesize(speaker=name)` unpacks the two values in that order). The export keeps the base model's
entries and adds one per speaker of the dataset, so `voice: ana` works with no upload in the API and in
every XTTS tool that reads the file.

Which clips a voice is computed from (`choose_clips`): the speaker's kept clips (every dataset filter
passed: duration, confidence, flags, speaker similarity, silence) without any flag, those whose
transcript confidence (exp of Whisper's avg_logprob) is at least 0.5 first, longest first, until XTTS's
conditioning window is full: the checkpoint's `gpt_cond_len` seconds (the GPT latents read the first
gpt_cond_len s of the joined clips; the speaker embedding averages every chosen clip, each cut to
`max_ref_len` s). At most MAX_CLIPS clips.

`python -m xttsflow.voices --export checkpoints/main/export --dataset dataset` adds the voices to an
export made before this existed.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

from . import cli
from .atomic import read_json, write_json
from .errors import XttsflowError

log = logging.getLogger(__name__)

SPEAKERS_FILE = "speakers_xtts.pth"
#: Clips below this transcript confidence (exp(avg_logprob)) are used only when too few others exist.
MIN_CONFIDENCE = 0.5
MAX_CLIPS = 8
_NAMES: dict[tuple, list[str]] = {}
_NAMES_LOCK = threading.Lock()


def choose_clips(dataset_dir: str | os.PathLike, window_s: float, min_confidence: float = MIN_CONFIDENCE,
                 max_clips: int = MAX_CLIPS) -> dict[str, list[dict]]:
    """Per speaker, the dataset clips its voice is computed from (see the module docstring); {} without
    dataset/clips.json (a dataset made by hand names no speakers or confidences)."""
    dataset_dir = Path(dataset_dir)
    listing = dataset_dir / "clips.json"
    if not listing.is_file():
        log.info("voices: %s has no clips.json (the dataset stage writes it); no named voice is added", dataset_dir)
        return {}
    by_speaker: dict[str, list[dict]] = {}
    for clip in read_json(listing)["clips"]:
        wav = dataset_dir / "wavs" / f"{clip['id']}.wav"
        if clip["kept"] and not clip.get("flags") and wav.is_file():
            by_speaker.setdefault(clip["speaker"], []).append({**clip, "file": str(wav)})
    chosen = {}
    for speaker, clips in sorted(by_speaker.items()):
        def rank(c):
            confidence = c["scores"].get("confidence")
            return (confidence is not None and confidence >= min_confidence, c["duration"], confidence or 0.0)

        picked, seconds = [], 0.0
        for clip in sorted(clips, key=lambda c: (rank(c), c["id"]), reverse=True):
            if seconds >= window_s or len(picked) >= max_clips:
                break
            picked.append(clip)
            seconds += clip["duration"]
        chosen[speaker] = picked
    return chosen


def voice_record(clips: list[dict]) -> dict:
    """What xttsflow.json says about a voice: its clips (dataset ids), their length and language."""
    languages = [c.get("language") for c in clips if c.get("language")]
    return {"clips": [c["id"] for c in clips], "seconds": round(sum(c["duration"] for c in clips), 3),
            "confidence": [c["scores"].get("confidence") for c in clips],
            "language": max(set(languages), key=languages.count) if languages else None}


def add_voices(model, speakers_in: Path | None, speakers_out: Path, chosen: dict[str, list[dict]]) -> dict:
    """Compute each speaker's conditioning with the loaded Xtts `model` and write speakers_in's entries plus
    these (a name already there is replaced) to speakers_out, atomically; return the voices' records."""
    import torch

    from .inference import conditioning
    from .xtts_model import load_state, save_state

    speakers = dict(load_state(speakers_in, "speakers file")) if speakers_in and Path(speakers_in).is_file() else {}
    device = next(model.parameters()).device
    was_training = model.training
    model.train(False)  # no dropout in the conditioning encoder (Module.train, not Xtts.eval: no GPT re-init)
    records = {}
    try:
        for name, clips in chosen.items():
            if not clips:
                continue
            voice = conditioning(model, [c["file"] for c in clips], device)
            if name in speakers:
                log.warning("voices: %s already names a voice in %s; the fine-tuned speaker replaces it", name,
                            speakers_in)
            speakers[name] = {"gpt_cond_latent": voice.gpt_cond_latent.detach().cpu().to(torch.float32),
                              "speaker_embedding": voice.speaker_embedding.detach().cpu().to(torch.float32)}
            records[name] = voice_record(clips)
            log.info("voices: %s from %d clips (%.1f s): %s", name, len(clips), records[name]["seconds"],
                     ", ".join(records[name]["clips"]))
    finally:
        model.train(was_training)
    save_state(speakers_out, speakers)
    return records


def add_dataset_voices(export_dir: str | os.PathLike, dataset_dir: str | os.PathLike, device: str = "auto") -> dict:
    """Add the dataset's speakers as named voices to an existing export (and record them in xttsflow.json)."""
    from .devices import resolve_device
    from .xtts_model import load_xtts

    export_dir = Path(export_dir)
    model = load_xtts(export_dir, device=resolve_device(device))
    chosen = choose_clips(dataset_dir, model.config.gpt_cond_len)
    if not chosen:
        raise XttsflowError(f"voices: no clips to compute a voice from in {dataset_dir} — it needs clips.json and "
                            "kept clips (re-run the dataset stage)")
    records = add_voices(model, export_dir / SPEAKERS_FILE, export_dir / SPEAKERS_FILE, chosen)
    info_path = export_dir / "xttsflow.json"
    info = read_json(info_path) if info_path.is_file() else {}
    write_json(info_path, {**info, "voices": {**info.get("voices", {}), **records}})
    return records


def speaker_names(folder: str | os.PathLike) -> list[str]:
    """The voice names in a checkpoint folder's speakers_xtts.pth, without loading the model (cached per file)."""
    from .xtts_model import load_state

    path = Path(folder) / SPEAKERS_FILE
    try:
        st = path.stat()
    except OSError:
        return []
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _NAMES_LOCK:
        if key in _NAMES:
            return _NAMES[key]
    try:
        names = [str(n) for n in load_state(path, "speakers file")]
    except XttsflowError as err:
        log.warning("voices: %s", err)
        names = []
    with _NAMES_LOCK:
        _NAMES[key] = names
    return names


def recorded_voices(folder: str | os.PathLike) -> dict[str, dict]:
    """The fine-tuned voices an export recorded in xttsflow.json (name -> clips, seconds, language)."""
    path = Path(folder) / "xttsflow.json"
    try:
        return dict(read_json(path).get("voices") or {}) if path.is_file() else {}
    except (OSError, ValueError, AttributeError):
        return {}


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser("voices", __doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="an export folder (checkpoints/<run>/export)")
    parser.add_argument("--dataset", default=Path("dataset"), type=Path, help="the dataset it was trained on")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    setup_console()
    records = add_dataset_voices(args.export, args.dataset, args.device)
    for name, record in records.items():
        print(f"{name}: {len(record['clips'])} clips, {record['seconds']} s")


if __name__ == "__main__":
    sys.exit(cli.run("voices", main))
