"""Faults users meet, each survived and explained: hostile file names through the real workflow."""

from __future__ import annotations

import string

import pytest
from conftest import snakemake, write_config

from xttsflow.audio import write_wav
from xttsflow.sources import local_source_id

pytestmark = pytest.mark.slow

#: Every printable ASCII character a file name may hold (all but "/"), in one name.
ALL_ASCII = "".join(c for c in string.printable if c not in "/\t\n\r\x0b\x0c") + ".wav"
HOSTILE_NAMES = [
    "x<h>y.wav",  # a Snakemake 9 path variable
    "take {1}.wav",  # a Snakemake wildcard
    "-rf.wav", "--help.wav",  # names that look like options
    ALL_ASCII,
    "é" * 125 + ".wav",  # 254 bytes of UTF-8: as long as a Linux file name goes (255)
]


def test_hostile_file_names_through_the_workflow(tmp_path, make_speech):
    names = HOSTILE_NAMES
    assert len(names[-1].encode()) == 254
    speech = make_speech(["The lighthouse keeper counted the ships.", "A storm came over the grey sea."], [0.9])
    rec = tmp_path / "recordings"
    rec.mkdir()
    for name in names:
        write_wav(rec / name, speech.samples, speech.sample_rate)
    write_config(tmp_path, {"sources": [{"path": "recordings", "speaker": "ana", "language": "en"}],
                            "until": "segment", "segment": {"min_duration": 1.0, "max_duration": 8.0}})
    dry = snakemake(tmp_path, "--dry-run")
    assert "Undefined pathvar" not in dry.stdout + dry.stderr
    snakemake(tmp_path, "--cores", "2")
    for name in names:
        sid = local_source_id(f"recordings/{name}")
        assert (tmp_path / "segments" / f"{sid}.json").is_file(), name
        assert len(list((tmp_path / "segments" / sid).glob("*.wav"))) == 2, name
    assert not (tmp_path / "pwned").exists() and sorted(p.name for p in rec.iterdir()) == sorted(names)


def test_too_short_speech_says_what_was_found(tmp_path, caplog):
    """A 1-second speech file: the message names the speech found and min_duration, not 'silence-only'."""
    import numpy as np

    from xttsflow.demo import espeak
    from xttsflow.segment import segment_file

    speech = espeak("Hello there.", speed=200)
    audio = tmp_path / "short.wav"
    write_wav(audio, np.concatenate([np.zeros(11025, np.float32), speech[:22050], np.zeros(11025, np.float32)]), 22050)
    caplog.set_level("WARNING", logger="xttsflow.segment")
    assert segment_file(audio, tmp_path / "segs", tmp_path / "segs.json", {"min_duration": 3.0})["segments"] == []
    assert "is shorter than segment.min_duration (3.0 s)" in caplog.text and "silence-only" not in caplog.text
    caplog.clear()
    write_wav(tmp_path / "silent.wav", np.zeros(44100, np.float32), 22050)
    segment_file(tmp_path / "silent.wav", tmp_path / "segs2", tmp_path / "segs2.json")
    assert "no speech found: the recording stays below -40.0 dBFS" in caplog.text


KILLED_WRITER = """
import sys, time
from pathlib import Path
from xttsflow.atomic import atomic_dir, atomic_path
out = Path(sys.argv[1])
with atomic_path(out / "samples.json") as tmp:
    tmp.write_text("{half")
    with atomic_dir(out / "finetuned") as folder:
        (folder / "000.wav").write_bytes(b"RIFF partial")
        print("writing", flush=True)
        time.sleep(60)
"""


def test_a_killed_writers_temporaries_are_removed_by_the_next_run(tmp_path):
    """kill -9 in the middle of an atomic folder and file (synthesis writes samples/<run>/<model>/ so):
    the next run of that job leaves no temporary behind, and the old output is never touched meanwhile."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import REPO

    from xttsflow.atomic import atomic_dir, write_json

    out = tmp_path / "samples"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = sorted(p.name for p in out.iterdir())
    assert len(leftovers) == 2 and all(name.startswith(".") and name.endswith(".tmp") for name in leftovers)
    with atomic_dir(out / "finetuned") as folder:
        (folder / "000.wav").write_bytes(b"RIFF whole")
    write_json(out / "samples.json", {"whole": True})
    assert sorted(p.name for p in out.iterdir()) == ["finetuned", "samples.json"]


def test_a_killed_run_is_explained_in_one_line_and_unlock_recovers(tmp_path, make_speech):
    """kill -9 of the whole run: the next run says in one line what happened and what to do."""
    import os
    import signal
    import subprocess
    import time

    from conftest import REPO, SNAKEMAKE

    speech = make_speech(["The lighthouse keeper counted the ships.", "A storm came over the grey sea."], [0.9])
    (tmp_path / "recordings").mkdir()
    write_wav(tmp_path / "recordings" / "take.wav", speech.samples, speech.sample_rate)
    write_config(tmp_path, {"sources": [{"path": "recordings", "speaker": "ana", "language": "en"}],
                            "until": "segment", "segment": {"min_duration": 1.0, "max_duration": 8.0}})
    proc = subprocess.Popen([*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--cores", "1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    locks = tmp_path / ".snakemake" / "locks"
    deadline = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.glob("*.lock"))):
        assert proc.poll() is None and time.monotonic() < deadline, "the run never took its lock"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    again = snakemake(tmp_path, "--cores", "1", check=False)
    notes = [line for line in again.stderr.splitlines() if line.startswith("xttsflow:")]
    assert again.returncode != 0 and len(notes) == 1 and "run `snakemake --unlock` once" in notes[0], again.stderr
    snakemake(tmp_path, "--unlock")
    done = snakemake(tmp_path, "--cores", "1")
    assert "xttsflow:" not in done.stderr
    assert (tmp_path / "segments" / f"{local_source_id('recordings/take.wav')}.json").is_file()


# ---------------------------------------------------------------- a full disk, in every stage

def fill(folder, ballast) -> None:
    """Fill the file system of `folder` to the last block (dd stops at ENOSPC)."""
    import subprocess

    for block in ("1M", "4k", "512"):
        subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", f"bs={block}", "oflag=append", "conv=notrunc"],
                       capture_output=True)


@pytest.fixture
def data_volume(tmp_path):
    """A 600 MB tmpfs to hold a working folder. Root only: mount needs it."""
    import subprocess

    mount = tmp_path / "volume"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_said_in_one_sentence_in_every_stage(tmp_path, data_volume, make_speech):
    """Each stage runs once with its output's disk full: one sentence naming the output, the free space and
    that nothing was kept; once space is freed the same run completes and no half-written output is used."""
    import yaml
    from conftest import REPO

    work = data_volume / "work"  # every output on the small disk; Snakemake's own records and the logs beside it
    (work / "recordings").mkdir(parents=True)
    for name in ("logs", ".snakemake"):
        (tmp_path / name).mkdir()
        (work / name).symlink_to(tmp_path / name)
    speech = make_speech(["The lighthouse keeper counted the ships.", "A storm came over the grey sea.",
                          "By morning the harbour was calm.", "The boats went out again at noon."], [0.9, 0.9, 0.9])
    write_wav(work / "recordings" / "take1.wav", speech.samples, speech.sample_rate)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update({"sources": [{"path": "recordings/take1.wav", "speaker": "lea", "language": "en"}],
                   "until": "evaluate", "segment": {"min_duration": 2.0, "max_duration": 8.0},
                   "dataset": {"min_duration": 1.0},
                   "evaluate": {"num_sentences": 1, "num_references": 1, "max_new_tokens": 20}})
    config["train"].update({"max_steps": 2, "batch_size": 2})
    write_config(work, config)
    sid = local_source_id("recordings/take1.wav")
    stages = [("ingest_local", f"raw/{sid}.flac"), ("segment", f"segments/{sid}.json"),
              ("transcribe", f"transcripts/{sid}.json"), ("speaker_embed", f"embeddings/{sid}.npz"),
              ("dataset", "dataset/stats.json"), ("base_model", "models/base"),
              ("train", "checkpoints/main/export/model.pth"), ("references", "samples/main/references.json"),
              ("synthesize", "samples/main/finetuned.json"), ("evaluate", "reports/main/metrics.json")]
    ballast = data_volume / "ballast"
    said = {}
    for rule, target in stages:
        fill(data_volume, ballast)
        proc = snakemake(work, "--cores", "2", target, check=False)
        console = proc.stdout + proc.stderr
        sentences = [line for line in console.splitlines() if "the disk is full:" in line]
        said[rule] = bool(proc.returncode != 0 and sentences and "nothing half-written was kept" in sentences[0])
        assert said[rule], f"{rule}: {console[-3000:]}"
        ballast.unlink()
        snakemake(work, "--cores", "2", target)
    assert all(said.values()) and len(said) == 10
    assert snakemake(work, "--cores", "2").returncode == 0 and (work / "reports" / "main" / "metrics.json").is_file()
