"""Faults users meet, each survived and explained in one sentence, through the real workflow: hostile file names,
too little speech, kill -9 of a writer and of the whole run, a full disk in every stage, damaged artifacts.
Each fault is tallied (tests/faultlog.py); pytest prints the tally at the end of the run."""

from __future__ import annotations

import string

import pytest
from conftest import snakemake, write_config
from faultlog import record

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
        record("hostile file name", name[:40], survived=True)
    assert not (tmp_path / "pwned").exists() and sorted(p.name for p in rec.iterdir()) == sorted(names)


def test_too_short_speech_says_what_was_found(tmp_path, caplog):
    """A 1-second speech file: the message names the speech found and min_duration, not 'silence-only'."""
    import numpy as np

    from xttsflow.demo import espeak
    from xttsflow.segment import SegmentConfig, segment_file

    speech = espeak("Hello there.", speed=200)
    audio = tmp_path / "short.wav"
    write_wav(audio, np.concatenate([np.zeros(11025, np.float32), speech[:22050], np.zeros(11025, np.float32)]), 22050)
    caplog.set_level("WARNING", logger="xttsflow.segment")
    result = segment_file(audio, tmp_path / "segs", tmp_path / "segs.json", SegmentConfig(min_duration=3.0))
    assert result["segments"] == []
    assert "is shorter than segment.min_duration (3.0 s)" in caplog.text and "silence-only" not in caplog.text
    record("no usable speech", "1 s of speech", survived=True)
    caplog.clear()
    write_wav(tmp_path / "silent.wav", np.zeros(44100, np.float32), 22050)
    segment_file(tmp_path / "silent.wav", tmp_path / "segs2", tmp_path / "segs2.json", SegmentConfig())
    assert "no speech found: the recording stays below -40.0 dBFS" in caplog.text
    record("no usable speech", "silence only", survived=True)


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
    record("kill -9 of a writer", "atomic folder + file", survived=True)


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
    record("stale lock after a kill", "whole run", survived=True)


# ---------------------------------------------------------------- a full disk, in every stage

def fill(folder, ballast) -> None:
    """Fill the file system of `folder` to the last block (dd stops at ENOSPC)."""
    import subprocess

    for block in ("1M", "4k", "512"):
        subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", f"bs={block}", "oflag=append", "conv=notrunc"],
                       capture_output=True)


@pytest.fixture
def data_volume(tmpfs):
    """A 600 MB tmpfs to hold a working folder. Root only: mount needs it."""
    return tmpfs("600m")


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
        record("disk full", rule, survived=True, named_cause=said[rule])
    assert all(said.values()) and len(said) == 10
    assert snakemake(work, "--cores", "2").returncode == 0 and (work / "reports" / "main" / "metrics.json").is_file()


# ---------------------------------------------------------------- damaged artifacts, and kill -9 at any moment

TEXTS = ["The lighthouse keeper counted the ships.", "A storm came over the grey sea.",
         "By morning the harbour was calm.", "The boats went out again at noon."]
SOURCE = "recordings/take1.wav"


def small_run_config() -> dict:
    """One ~11 s recording cut into four clips, 2 LoRA steps of the tiny XTTS, one sentence per model."""
    import yaml
    from conftest import REPO

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update({"sources": [{"path": SOURCE, "speaker": "lea", "language": "en"}], "until": "evaluate",
                   "segment": {"min_duration": 2.0, "max_duration": 8.0}, "dataset": {"min_duration": 1.0},
                   "evaluate": {"num_sentences": 1, "num_references": 1, "max_new_tokens": 20}})
    config["train"].update({"max_steps": 2, "batch_size": 2})
    return config


def new_workdir(path, make_speech):
    speech = make_speech(TEXTS, [0.9, 0.9, 0.9])
    (path / "recordings").mkdir(parents=True)
    write_wav(path / SOURCE, speech.samples, speech.sample_rate)
    write_config(path, small_run_config())
    return path


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, make_speech):
    work = new_workdir(tmp_path_factory.mktemp("clean") / "work", make_speech)
    snakemake(work, "--cores", "2")
    return work


def private_copy(src, dest):
    """A copy whose big files are hard links (so damage is done by replacing a file, never in place) and
    whose Snakemake records are real copies (Snakemake rewrites them in place)."""
    import os
    import shutil

    def copy(a, b):
        (shutil.copy2 if "/.snakemake/" in a else os.link)(a, b)

    shutil.copytree(src, dest, symlinks=True, copy_function=copy)
    return dest


def damage(path, how: str) -> None:
    data = path.read_bytes()
    path.unlink()  # a new inode: the clean run's hard-linked original stays whole
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])


SID = local_source_id(SOURCE)
#: (artifact, the rule that reads it, a target that makes that rule run)
ARTIFACTS = [
    (f"raw/{SID}.json", "segment", f"segments/{SID}.json"),
    (f"segments/{SID}.json", "transcribe", f"transcripts/{SID}.json"),
    (f"transcripts/{SID}.json", "dataset", "dataset/stats.json"),
    (f"embeddings/{SID}.npz", "dataset", "dataset/stats.json"),
    ("dataset/stats.json", "train", "checkpoints/main/export/model.pth"),
    ("dataset/metadata_train.csv", "train", "checkpoints/main/export/model.pth"),
    ("checkpoints/main/export/model.pth", "synthesize", "samples/main/finetuned.json"),
    ("samples/main/references.json", "synthesize", "samples/main/finetuned.json"),
]


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize(("artifact", "reader", "target"), ARTIFACTS, ids=[a[0].split("/")[-1] for a in ARTIFACTS])
def test_a_damaged_artifact_is_named_with_the_rule_that_makes_it(clean_run, tmp_path, artifact, reader, target,
                                                                  how):
    from xttsflow import paths

    work = private_copy(clean_run, tmp_path / "work")
    damage(work / artifact, how)
    proc = snakemake(work, "--cores", "2", "--forcerun", reader, target, check=False)
    console = proc.stdout + proc.stderr
    rule = paths.producer(artifact)
    named = proc.returncode != 0 and artifact in console and f"made by rule {rule}" in console
    assert named, console[-4000:]
    # Following the message (delete it, run again) recovers.
    (work / artifact).unlink()
    snakemake(work, "--cores", "2", target)
    record(f"{how} artifact", artifact, survived=True, named_cause=named)


#: (stage, the log its job writes first, its output): the run is killed at a seeded random moment after the
#: first stage that is not done yet has started.
KILL_POINTS = [("ingest_local", f"logs/ingest/{SID}.log", f"raw/{SID}.flac"),
               ("segment", f"logs/segment/{SID}.log", f"segments/{SID}.json"),
               ("transcribe", f"logs/transcribe/{SID}.log", f"transcripts/{SID}.json"),
               ("dataset", "logs/dataset.log", "dataset/stats.json"),
               ("base_model", "logs/base_model.log", "models/base"),
               ("train", "logs/train/main.log", "checkpoints/main/export/model.pth"),
               ("synthesize", "logs/evaluate/main/synthesize_finetuned.log", "samples/main/finetuned.json")]


def test_kill_9_at_random_moments_in_every_stage_then_the_same_outputs(clean_run, tmp_path, make_speech):
    """The whole run is killed (process group, SIGKILL) at seeded random moments, once in each stage that is
    still to do; after `--unlock` and a plain re-run the outputs equal a clean run's: bytes for data, a
    tolerance for trained weights."""
    import json
    import os
    import random
    import signal
    import subprocess
    import time

    import torch
    from conftest import REPO, SNAKEMAKE

    rng = random.Random(1234)
    work = new_workdir(tmp_path / "work", make_speech)
    killed = []
    for _ in range(12):
        todo = [(stage, log) for stage, log, out in KILL_POINTS if not (work / out).exists()]
        if not todo:
            break
        stage, log = todo[0]
        started = time.time()
        proc = subprocess.Popen([*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--cores", "2"], cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while not ((work / log).is_file() and (work / log).stat().st_mtime >= started - 1):
            if proc.poll() is not None:
                break
            assert time.time() < started + 600, f"{stage} never started"
            time.sleep(0.05)
        if proc.poll() is not None:  # the run got through to the end first
            assert proc.returncode == 0
            break
        time.sleep(rng.uniform(0.0, 2.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed.append(stage)
        snakemake(work, "--unlock")
    assert len(killed) >= 6, killed
    snakemake(work, "--cores", "2")

    def same_bytes(folder: str) -> bool:
        ours = {p.relative_to(work): p.read_bytes() for p in sorted((work / folder).rglob("*")) if p.is_file()}
        clean = {p.relative_to(clean_run): p.read_bytes() for p in sorted((clean_run / folder).rglob("*"))
                 if p.is_file()}
        return ours.keys() == clean.keys() and all(ours[k] == clean[k] for k in ours)

    assert same_bytes("raw") and same_bytes("segments") and same_bytes("embeddings") and same_bytes("dataset")
    timing = {"realtime_factor", "transcribe_seconds"}

    def transcript(root):
        data = json.loads((root / f"transcripts/{SID}.json").read_text())
        data["stats"] = {k: v for k, v in data["stats"].items() if k not in timing}
        return data

    assert transcript(work) == transcript(clean_run)
    ours = torch.load(work / "checkpoints/main/export/model.pth", weights_only=True)["model"]
    clean = torch.load(clean_run / "checkpoints/main/export/model.pth", weights_only=True)["model"]
    assert ours.keys() == clean.keys()
    for name, value in clean.items():
        torch.testing.assert_close(ours[name], value, rtol=0, atol=1e-5)
    assert sorted(p.name for p in (work / "samples/main/finetuned").glob("*.wav")) == \
        sorted(p.name for p in (clean_run / "samples/main/finetuned").glob("*.wav"))
    assert (work / "reports/main/metrics.json").is_file()
    assert not [p for p in work.rglob(".*.tmp")], "temporaries left behind"
    for stage in killed:
        record("kill -9 of the run", stage, survived=True)
