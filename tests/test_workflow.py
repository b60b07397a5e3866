"""Issue 2 across stages: real Snakemake runs from local recordings to segments.

One broken source never stops the others, nothing partial is left behind, a re-run plans nothing and
touching one recording re-runs only that recording's jobs.
"""

import json
import shutil
import socket

import pytest
import soundfile as sf
from conftest import planned_jobs, snakemake, write_config

from xttsflow.sources import local_source_id, url_source_id

pytestmark = pytest.mark.slow

ODD_NAME = "it's a $(test) & ü 1.wav"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, make_speech):
    """Good, broken, silent and unreachable sources in one run with --keep-going."""
    work = tmp_path_factory.mktemp("mixed")
    rec = work / "recordings"
    rec.mkdir()
    speech = make_speech(["The first sentence of the recording.", "A second sentence follows the pause.",
                          "And a third one closes it."], [0.8, 1.0])
    sf.write(rec / ODD_NAME, speech.samples, speech.sample_rate, subtype="PCM_16")
    sf.write(rec / "second take.flac", speech.samples[::-1].copy(), speech.sample_rate)
    sf.write(rec / "silence.wav", speech.samples * 0, speech.sample_rate, subtype="PCM_16")
    (rec / "empty.mp3").write_bytes(b"")
    (rec / "notes.mp3").write_text("these are my notes, not audio\n")
    url = f"http://127.0.0.1:{_closed_port()}/talk.mp3"
    write_config(work, {
        "sources": [{"path": "recordings", "speaker": "ana", "language": "en"},
                    {"url": url, "speaker": "ana", "language": "en"}],
        "until": "segment",
        "on_source_error": "stop",  # today's behaviour: a broken source fails its job (and the run)
        "ingest": {"retries": 0},
        "segment": {"min_duration": 1.0, "max_duration": 8.0},
    })
    proc = snakemake(work, "--cores", "2", "--keep-going", check=False)
    ids = {name: local_source_id(f"recordings/{name}")
           for name in [ODD_NAME, "second take.flac", "silence.wav", "empty.mp3", "notes.mp3"]}
    return work, proc, ids, url


def test_good_sources_complete_despite_broken_ones(mixed_run):
    work, proc, ids, _ = mixed_run
    assert proc.returncode != 0  # the broken sources fail the run as a whole ...
    for name in [ODD_NAME, "second take.flac"]:  # ... but every good one is done
        manifest = json.loads((work / "segments" / f"{ids[name]}.json").read_text())
        assert manifest["speaker"] == "ana" and manifest["sample_rate"] == 22050
        assert len(manifest["segments"]) >= 1
        for seg in manifest["segments"]:
            info = sf.info(work / "segments" / ids[name] / seg["file"])
            assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")


def test_silence_only_is_a_valid_empty_result(mixed_run):
    work, _, ids, _ = mixed_run
    manifest = json.loads((work / "segments" / f"{ids['silence.wav']}.json").read_text())
    assert manifest["segments"] == []
    assert not list((work / "segments" / ids["silence.wav"]).glob("*.wav"))


@pytest.mark.parametrize(("name", "message"), [("empty.mp3", "empty"), ("notes.mp3", "not audio")])
def test_broken_file_fails_alone_with_a_clear_message_and_no_output(mixed_run, name, message):
    work, _, ids, _ = mixed_run
    sid = ids[name]
    assert not (work / "raw" / f"{sid}.flac").exists() and not (work / "raw" / f"{sid}.json").exists()
    assert not (work / "segments" / sid).exists()
    log = (work / "logs" / "ingest" / f"{sid}.log").read_text()
    assert name in log and message in log, log


def test_unreachable_url_fails_alone(mixed_run):
    work, proc, _, url = mixed_run
    uid = url_source_id(url)
    logs = "".join(p.read_text() for p in (work / "logs").rglob(f"{uid}*.log"))
    assert "127.0.0.1" in logs and ("refused" in logs.lower() or "unable" in logs.lower()), logs
    assert not list((work / "raw").glob(f"{uid}*.flac"))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, make_speech):
    work = tmp_path_factory.mktemp("good")
    speech = make_speech(["Good morning and welcome to the programme.", "Today we talk about the sea."], [0.9])
    (work / "recordings").mkdir()
    for name in ["one.wav", "two.wav"]:
        sf.write(work / "recordings" / name, speech.samples, speech.sample_rate, subtype="PCM_16")
    write_config(work, {"sources": [{"path": "recordings", "speaker": "bo", "language": "en"}],
                        "until": "segment", "segment": {"min_duration": 1.0, "max_duration": 8.0}})
    snakemake(work, "--cores", "2")
    return work


def test_rerun_plans_nothing(good_run):
    assert planned_jobs(good_run) == {}


def test_editing_one_recording_reruns_only_its_jobs(good_run, tmp_path):
    # Snakemake 9 compares checksums of small inputs, so a bare `touch` is (rightly) not a change: edit it.
    work = tmp_path / "copy"
    shutil.copytree(good_run, work, symlinks=True)
    samples, rate = sf.read(work / "recordings" / "one.wav")
    sf.write(work / "recordings" / "one.wav", samples * 0.5, rate, subtype="PCM_16")
    assert planned_jobs(work) == {"ingest_local": 1, "segment": 1, "all": 1}


def test_deleting_a_segment_folder_recreates_it_without_reingesting(good_run, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(good_run, work, symlinks=True)
    sid = local_source_id("recordings/two.wav")
    raw_mtime = (work / "raw" / f"{sid}.flac").stat().st_mtime
    shutil.rmtree(work / "segments" / sid)
    assert planned_jobs(work) == {"segment": 1, "all": 1}
    snakemake(work, "--cores", "1")
    assert (work / "segments" / sid).is_dir()
    assert (work / "raw" / f"{sid}.flac").stat().st_mtime == raw_mtime
