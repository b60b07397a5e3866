"""`reference:` on a source entry: the target is a minority voice in an interview, and the speaker screen
must keep the target's clips (scored against the reference clip) instead of the host's (the centroid).

Real audio, real Resemblyzer embeddings: the target is LJSpeech (a real voice), the host an espeak-ng voice
that talks most of the interview."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xttsflow.audio import write_wav
from xttsflow.dataset import DatasetConfig, SourceFiles, build_dataset
from xttsflow.demo import DEMO_SENTENCES
from xttsflow.errors import XttsflowError
from xttsflow.speaker import embed_source, read_reference

HOST_TURNS = 10  # the host talks most
TARGET_TURNS = 2


@pytest.fixture(scope="module")
def interview(tmp_path_factory, ljspeech_dir, make_speech) -> dict:
    """Turns of an interview (host: espeak-ng, target: LJSpeech) and a separate reference clip of the target."""
    folder = tmp_path_factory.mktemp("interview")
    lj = sorted((ljspeech_dir / "unlabeled").glob("*.wav"))
    turns = []
    for text in DEMO_SENTENCES[:HOST_TURNS]:
        speech = make_speech([text], [])
        turns.append({"who": "host", "text": text, "audio": speech.samples, "rate": speech.sample_rate})
    for path in lj[:TARGET_TURNS]:
        audio, rate = sf.read(path, dtype="float32")
        turns.append({"who": "target", "text": "a line the target said.", "audio": audio, "rate": rate})
    reference = folder / "target_voice.wav"
    shutil.copyfile(lj[TARGET_TURNS], reference)  # a clip the interview does not hold
    return {"turns": turns, "reference": reference}


def write_interview(root: Path, source: str, turns: list[dict], speaker: str = "ana") -> None:
    """segments/{source}/ WAVs + manifest and transcripts/{source}.json, as the segment and transcribe stages do."""
    seg_dir = root / "segments" / source
    seg_dir.mkdir(parents=True, exist_ok=True)
    segments, transcript = [], []
    for k, turn in enumerate(turns):
        clip_id = f"{source}_{k:04d}"
        write_wav(seg_dir / f"{clip_id}.wav", turn["audio"], turn["rate"])
        duration = len(turn["audio"]) / turn["rate"]
        segments.append({"id": clip_id, "file": f"{clip_id}.wav", "start": 0.0, "end": duration,
                         "duration": duration, "speech_ratio": 0.8, "who": turn["who"]})
        transcript.append({"id": clip_id, "file": f"{clip_id}.wav", "duration": duration, "text": turn["text"],
                           "language": "en", "language_probability": 0.99, "avg_logprob": -0.2,
                           "no_speech_prob": 0.01, "compression_ratio": 1.2, "words": [], "flags": []})
    head = {"source": source, "speaker": speaker, "language": "en"}
    (root / "transcripts").mkdir(exist_ok=True)
    (root / "segments" / f"{source}.json").write_text(json.dumps({**head, "sample_rate": 22050, "segments": segments}))
    (root / "transcripts" / f"{source}.json").write_text(json.dumps(
        {**head, "backend": "test", "model": "crafted", "backend_version": "0", "segments": transcript, "stats": {}}))


def kept_seconds(stats_dir: Path, turns: list[dict]) -> dict[str, float]:
    """Seconds of each voice among the clips the dataset kept."""
    kept = {row.split("|")[0] for row in (stats_dir / "metadata.csv").read_text().splitlines()}
    out = {"host": 0.0, "target": 0.0}
    for k, turn in enumerate(turns):
        if any(name.endswith(f"_{k:04d}") for name in kept):
            out[turn["who"]] += len(turn["audio"]) / turn["rate"]
    return out


def screen(root: Path, source: str, reference: Path | None) -> dict[str, float]:
    embed_source(root / "segments" / f"{source}.json", root / "segments" / source,
                 root / "embeddings" / f"{source}.npz", device="cpu", reference=reference)
    files = SourceFiles(source, root / "transcripts" / f"{source}.json", root / "segments" / f"{source}.json",
                        root / "embeddings" / f"{source}.npz")
    out = root / ("pinned" if reference else "centroid")
    build_dataset([files], out, DatasetConfig(min_duration=1.0))
    return out


def test_reference_keeps_the_minority_target_the_centroid_keeps_the_host(tmp_path, interview):
    turns = interview["turns"]
    write_interview(tmp_path, "talk-00000001", turns)

    centroid = kept_seconds(screen(tmp_path, "talk-00000001", None), turns)
    pinned = kept_seconds(screen(tmp_path, "talk-00000001", interview["reference"]), turns)
    print(f"\nkept seconds without reference: {centroid}; with reference: {pinned}")
    # The problem: the centroid is the host's voice, so the host's turns are kept and the target's dropped.
    assert centroid["host"] > 0 and centroid["target"] == 0, centroid
    # The fix: scored against the reference clip, only the target's turns are kept.
    assert pinned["target"] > 0 and pinned["host"] == 0, pinned
    assert read_reference(tmp_path / "embeddings" / "talk-00000001.npz").shape == (256,)


def test_unpinned_sources_keep_a_centroid_fit_without_the_pinned_ones(tmp_path, interview, ljspeech_dir):
    """A speaker with a pinned interview and a solo recording: the solo's centroid is fit over the solo alone,
    so the interview's host (the majority of the speaker's clips) does not pull it away from the target."""
    turns = interview["turns"]
    write_interview(tmp_path, "talk-00000001", turns)
    solo = []
    for path in sorted((ljspeech_dir / "unlabeled").glob("*.wav"))[TARGET_TURNS + 1:TARGET_TURNS + 4]:
        audio, rate = sf.read(path, dtype="float32")
        solo.append({"who": "target", "text": "a line the target said.", "audio": audio, "rate": rate})
    write_interview(tmp_path, "solo-00000002", solo)
    files = []
    for source, reference in (("talk-00000001", interview["reference"]), ("solo-00000002", None)):
        embed_source(tmp_path / "segments" / f"{source}.json", tmp_path / "segments" / source,
                     tmp_path / "embeddings" / f"{source}.npz", device="cpu", reference=reference)
        files.append(SourceFiles(source, tmp_path / "transcripts" / f"{source}.json",
                                 tmp_path / "segments" / f"{source}.json", tmp_path / "embeddings" / f"{source}.npz"))
    stats = build_dataset(files, tmp_path / "dataset", DatasetConfig(min_duration=1.0))
    kept = {row.split("|")[0] for row in (tmp_path / "dataset" / "metadata.csv").read_text().splitlines()}
    clips = json.loads((tmp_path / "dataset" / "clips.json").read_text())["clips"]
    solo_similarity = [c["scores"]["speaker_similarity"] for c in clips if c["source"] == "solo-00000002"]
    # One voice against its own centroid: > 0.85 (against a centroid the host pulls: 0.75-0.78, measured)
    assert len(solo_similarity) == len(solo) and min(solo_similarity) > 0.85, solo_similarity
    assert {k for k in kept if k.startswith("solo")} == {f"solo-00000002_{k:04d}" for k in range(len(solo))}, stats
    assert {k for k in kept if k.startswith("talk")} == {f"talk-00000001_{k:04d}" for k in
                                                         range(HOST_TURNS, HOST_TURNS + TARGET_TURNS)}


def test_a_reference_that_is_no_voice_fails_with_a_short_clear_error(tmp_path, interview):
    write_interview(tmp_path, "talk-00000001", interview["turns"][:1])
    not_audio = tmp_path / "voice.wav"
    not_audio.write_bytes(b"not audio at all")
    silence = tmp_path / "silence.wav"
    write_wav(silence, np.zeros(22050 * 3, np.float32), 22050)
    for bad, why in ((not_audio, "is not a readable audio file"), (silence, "holds under 0.5 s of audio")):
        with pytest.raises(XttsflowError, match=why) as err:
            embed_source(tmp_path / "segments" / "talk-00000001.json", tmp_path / "segments" / "talk-00000001",
                         tmp_path / "embeddings" / "talk-00000001.npz", device="cpu", reference=bad)
        assert str(bad) in str(err.value) and len(str(err.value)) < 200
    assert not (tmp_path / "embeddings" / "talk-00000001.npz").exists()  # failed before any embedding


def test_a_missing_reference_stops_the_run_at_config_time_naming_source_and_path(tmp_path):
    from xttsflow.config import validate_config
    from xttsflow.sources import source_table

    (tmp_path / "talk.wav").write_bytes(b"")
    (tmp_path / "voice.wav").write_bytes(b"")
    entry = {"path": "talk.wav", "speaker": "ana", "language": "en"}
    config = validate_config({"sources": [entry, {**entry, "path": "other.wav", "reference": "nope/voice.wav"}]})
    with pytest.raises(XttsflowError, match=r"sources\[1\] \(other\.wav\): reference 'nope/voice\.wav' is not a file"):
        source_table(config, tmp_path)
    pinned = source_table(validate_config({"sources": [{**entry, "reference": "voice.wav"}]}), tmp_path)
    plain = source_table(validate_config({"sources": [entry]}), tmp_path)
    # The id and the ingest jobs' params (as_dict) depend on the recording alone: a new clip re-ingests nothing
    assert pinned.keys() == plain.keys() and [s.as_dict() for s in pinned.values()] == [
        s.as_dict() for s in plain.values()]
    assert [s.reference for s in pinned.values()] == ["voice.wav"]
    with pytest.raises(XttsflowError, match="reference"):
        validate_config({"sources": [{**entry, "reference": ""}]})


@pytest.mark.slow
def test_snakemake_embeds_the_reference_and_a_bad_one_fails_only_its_source(tmp_path, interview, ljspeech_dir):
    """The real rules: speaker_embed reads the reference as an input; a reference that is not audio fails only
    its own source (on_source_error: skip); a changed reference re-runs only that source's embedding and the
    dataset."""
    from conftest import planned_jobs, snakemake, write_config

    from xttsflow.sources import local_source_id

    good, bad = local_source_id("talk.wav"), local_source_id("broken.wav")
    shutil.copyfile(interview["reference"], tmp_path / "target_voice.wav")
    (tmp_path / "not_a_voice.wav").write_text("not audio")
    write_config(tmp_path, {"sources": [
        {"path": "talk.wav", "speaker": "ana", "language": "en", "reference": "target_voice.wav"},
        {"path": "broken.wav", "speaker": "ana", "language": "en", "reference": "not_a_voice.wav"}],
        "until": "dataset", "dataset": {"min_duration": 1.0}})
    # The upstream stages' files as earlier jobs would have left them; speaker_embed is left to run.
    for sid in (good, bad):
        (tmp_path / "raw").mkdir(exist_ok=True)
        sf.write(tmp_path / "raw" / f"{sid}.flac", interview["turns"][0]["audio"], 22050, format="FLAC")
        (tmp_path / "raw" / f"{sid}.json").write_text(json.dumps({"source": sid}))
        write_interview(tmp_path, sid, interview["turns"])
        for stage in ("ingest", "segment", "transcribe"):
            (tmp_path / "status" / stage).mkdir(parents=True, exist_ok=True)
            (tmp_path / "status" / stage / f"{sid}.json").write_text(json.dumps({"ok": True, "source": sid,
                                                                                 "stage": stage}))
    stamp = 1_700_000_000
    for order, pattern in enumerate(["*.wav", "raw/*", "status/ingest/*", "segments/*/*.wav", "segments/*",
                                     "status/segment/*", "transcripts/*", "status/transcribe/*"]):
        for path in tmp_path.glob(pattern):
            os.utime(path, (stamp + order * 10, stamp + order * 10))
    mtime_only = ("--rerun-triggers", "mtime")
    snakemake(tmp_path, "--cores", "1", *mtime_only)

    stats = json.loads((tmp_path / "dataset" / "stats.json").read_text())
    assert set(stats["sources"]) == {good}, stats["sources"]
    failed = json.loads((tmp_path / "status" / "speaker_embed" / f"{bad}.json").read_text())
    assert not failed["ok"] and "not_a_voice.wav is not a readable audio file" in failed["reason"]
    assert kept_seconds(tmp_path / "dataset", interview["turns"]) == pytest.approx(
        {"host": 0.0, "target": sum(len(t["audio"]) / t["rate"] for t in interview["turns"] if t["who"] == "target")})

    # Another clip of the target (new content: Snakemake ignores a mere touch of a file it recorded)
    shutil.copyfile(sorted((ljspeech_dir / "unlabeled").glob("*.wav"))[-1], tmp_path / "target_voice.wav")
    assert planned_jobs(tmp_path, *mtime_only) == {"speaker_embed": 1, "dataset": 1, "review": 1, "all": 1}
