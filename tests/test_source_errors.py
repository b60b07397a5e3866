"""A failed source never blocks the others (issue 10.1): five sources, two broken, one plain run.

A 404 URL on a local HTTP server and a text file posing as an mp3 are recorded with their stage and
reason; the dataset is built from the three good recordings in the same `snakemake` run (no
--keep-going); fixing a broken source re-runs its own jobs and the aggregate ones, nothing else.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, planned_jobs, snakemake, write_config
from test_ingest import MediaServer

from xttsflow.audio import write_wav
from xttsflow.sources import local_source_id, url_source_id
from xttsflow.status import read_status, run_source_stage

pytestmark = pytest.mark.slow

TEXTS = {
    "good-a": ["The lighthouse keeper counted the ships.", "A storm came over the grey sea."],
    "good-b": ["She painted the old door bright green.", "Neighbours stopped to look at it."],
    "good-c": ["The train left the station at noon.", "Nobody on the platform waved."],
    "fixed": ["The baker opened his shop early.", "Fresh bread filled the whole street."],
}


def _speech_wav(path: Path, name: str, make_speech) -> Path:
    speech = make_speech(TEXTS[name], [0.9])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, speech.samples, speech.sample_rate)
    return path


def _mp3(wav: Path, dest: Path) -> bytes:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", "96k",
                    str(dest)], check=True)
    return dest.read_bytes()


def _mtimes(work: Path, source: str) -> dict[str, int]:
    files = [f"raw/{source}.flac", f"segments/{source}.json", f"transcripts/{source}.json",
             f"embeddings/{source}.npz"]
    return {f: (work / f).stat().st_mtime_ns for f in files}


def test_run_source_stage_records_and_passes_on_a_failure(tmp_path):
    """The package piece: a failure leaves placeholders and a status; the next stage passes it on."""
    def broken():
        (tmp_path / "out.json").write_text("{half")
        raise ValueError("decoder gave up")

    first = run_source_stage("segment", "s1", broken, status=tmp_path / "seg.json",
                             files=[tmp_path / "out.json"], dirs=[tmp_path / "segs"])
    assert (first["ok"], first["stage"], first["reason"]) == (False, "segment", "decoder gave up")
    assert json.loads((tmp_path / "out.json").read_text())["failed"]["reason"] == "decoder gave up"
    assert (tmp_path / "segs").is_dir() and not list((tmp_path / "segs").iterdir())
    ran = []
    second = run_source_stage("transcribe", "s1", lambda: ran.append(1), status=tmp_path / "tr.json",
                              files=[tmp_path / "tr-out.json"], upstream=[tmp_path / "seg.json"])
    assert not ran and second["upstream"] and second["stage"] == "segment"
    assert read_status(tmp_path / "tr.json")["reason"] == "decoder gave up"
    with pytest.raises(ValueError, match="decoder gave up"):
        run_source_stage("segment", "s1", broken, status=tmp_path / "stop.json", policy="stop")
    assert not (tmp_path / "stop.json").exists()


def test_two_broken_sources_of_five_do_not_block_the_dataset(tmp_path, make_speech):
    server = MediaServer()
    work = tmp_path / "work"
    for name in ("good-a", "good-b", "good-c"):
        _speech_wav(work / "recordings" / f"{name}.wav", name, make_speech)
    (work / "recordings" / "broken.mp3").write_text("these are my notes, not audio\n" * 20)
    url = server.base + "/deleted.mp3"
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update({
        "sources": [{"path": f"recordings/{n}", "speaker": "lea", "language": "en"}
                    for n in ("good-a.wav", "good-b.wav", "good-c.wav", "broken.mp3")]
        + [{"url": url, "speaker": "lea", "language": "en"}],
        "until": "dataset",
        "ingest": {"retries": 0, "socket_timeout": 5},
        "segment": {"min_duration": 1.0, "max_duration": 8.0},
        "dataset": {"min_duration": 1.0, "min_val_clips": 1},
    })
    write_config(work, config)
    good = {n: local_source_id(f"recordings/{n}.wav") for n in ("good-a", "good-b", "good-c")}
    broken_id, url_id = local_source_id("recordings/broken.mp3"), url_source_id(url)

    proc = snakemake(work, "--cores", "2")  # plain: no --keep-going, and it succeeds
    stats = json.loads((work / "dataset" / "stats.json").read_text())
    assert sorted(stats["sources"]) == sorted(good.values())
    assert all(info["kept"] >= 1 for info in stats["sources"].values()), stats["sources"]
    failed = stats["failed_sources"]
    assert sorted(failed) == sorted([broken_id, url_id])
    assert failed[broken_id]["stage"] == "ingest" and "is not audio" in failed[broken_id]["reason"]
    assert failed[url_id]["stage"] == "ingest" and "404" in failed[url_id]["reason"]
    accounting = stats["accounting"]
    assert sorted(accounting["total"]["failed_sources"]) == sorted([broken_id, url_id])
    for sid in good.values():  # every decoded second is kept or dropped with its stage and reason
        acc = accounting["sources"][sid]
        assert acc["decoded"] > acc["in_segments"] >= acc["transcribed"] >= acc["kept"] > 0
        assert acc["kept"] + sum(acc["dropped"].values()) == pytest.approx(acc["decoded"], abs=0.05)
    kept = (work / "dataset" / "metadata.csv").read_text().splitlines()
    assert kept and all(line.split("|")[0].startswith(tuple(good.values())) for line in kept)
    console = proc.stdout + proc.stderr
    for sid in (broken_id, url_id):
        assert f"xttsflow: source {sid} failed in ingest" in console, console
    # never half-counted: the broken source's later stages hold placeholders that say why
    assert read_status(work / "status" / "transcribe" / f"{broken_id}.json")["upstream"] is True
    assert not list((work / "segments" / broken_id).glob("*.wav"))
    before = {sid: _mtimes(work, sid) for sid in good.values()}

    # The site is back: only the URL's jobs and the aggregate ones run; the unchanged broken file is not retried.
    server.add("/deleted.mp3", _mp3(_speech_wav(tmp_path / "served.wav", "fixed", make_speech), tmp_path / "s.mp3"))
    assert planned_jobs(work, "--cores", "2") == {"resolve_url": 1, "dataset": 1, "review": 1, "all": 1}
    snakemake(work, "--cores", "2")
    stats = json.loads((work / "dataset" / "stats.json").read_text())
    assert sorted(stats["failed_sources"]) == [broken_id] and len(stats["sources"]) == 4
    assert {sid: _mtimes(work, sid) for sid in good.values()} == before

    # The file is replaced by a real recording: its own four jobs and the aggregate ones, nothing else.
    _mp3(_speech_wav(tmp_path / "fixed.wav", "fixed", make_speech), work / "recordings" / "broken.mp3")
    assert planned_jobs(work, "--cores", "2") == {
        "ingest_local": 1, "segment": 1, "transcribe": 1, "speaker_embed": 1, "dataset": 1, "review": 1, "all": 1}
    snakemake(work, "--cores", "2")
    stats = json.loads((work / "dataset" / "stats.json").read_text())
    assert stats["failed_sources"] == {} and len(stats["sources"]) == 5
    assert planned_jobs(work, "--cores", "2") == {}
