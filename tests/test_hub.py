"""Models by name through xttsflow.hub, against a stand-in hub / file server on 127.0.0.1 (tests/hubserver.py):
XTTS-v2 (with the dvae.pth and mel_stats.pth training needs), faster-whisper and openai-whisper by name;
a dropped connection, a 404, no network and a full disk."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import re
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, snakemake, write_config
from faultlog import record
from hubserver import StandInServer
from train_fixtures import tiny_base

from xttsflow import hub
from xttsflow.asr.config import TranscribeConfig
from xttsflow.asr.models import resolve_model
from xttsflow.asr.openai_whisper import WHISPER_HOST
from xttsflow.asr.transcriber import make_transcriber
from xttsflow.audio import write_wav
from xttsflow.base_model import prepare_base_model
from xttsflow.demo import espeak
from xttsflow.errors import XttsflowError
from xttsflow.settings import XTTS_V2
from xttsflow.xtts_model import XTTS_FILES

REPO_ID = "tts-hub/XTTS-v2"  # where coqui-tts's model list says XTTS-v2 lives


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server():
    srv = StandInServer()
    yield srv
    srv.close()


@pytest.fixture
def hub_env(server, tmp_path, monkeypatch) -> StandInServer:
    """HF_ENDPOINT at the stand-in, an empty private HF cache, the tiny XTTS served as XTTS-v2."""
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("COQUI_TOS_AGREED", raising=False)
    server.add_repo(REPO_ID, tiny_base())
    return server


def assert_same_files(folder: Path, reference: Path) -> None:
    for name in XTTS_FILES:
        assert sha256(folder / name) == sha256(reference / name), name


def test_xtts_by_name_fetches_what_training_needs(hub_env, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(hub, "PROGRESS_EVERY_S", 0.0)  # a progress line per network read
    caplog.set_level("INFO", logger="xttsflow.hub")
    out = prepare_base_model(XTTS_V2, tmp_path / "models" / "base", accept_cpml=True)
    assert_same_files(out, tiny_base())
    assert re.search(r"model\.pth \d+\.\d MB of 93\.7 MB \(\d+%\), [\d.]+ MB/s, ~\d+ s left", caplog.text)
    for name in ("dvae.pth", "mel_stats.pth", "model.pth"):  # coqui's list would skip dvae.pth
        assert hub_env.gets(name) == [None], name
    snapshot = next((tmp_path / "hf" / "hub" / "models--tts-hub--XTTS-v2" / "snapshots").iterdir())
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(XTTS_FILES)
    # A second model folder from the same cache downloads nothing again.
    before = len(hub_env.gets("model.pth"))
    prepare_base_model(XTTS_V2, tmp_path / "again", accept_cpml=True)
    assert len(hub_env.gets("model.pth")) == before


def test_nothing_requested_before_the_licence_is_accepted(hub_env, tmp_path):
    with pytest.raises(XttsflowError, match="Coqui Public Model License"):
        prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=False)
    assert hub_env.requests == []
    assert not (tmp_path / "hf").exists() and not (tmp_path / "base").exists()


def test_dropped_connection_resumes_in_the_same_run(hub_env, tmp_path):
    size = (tiny_base() / "model.pth").stat().st_size
    hub_env.drop_after["model.pth"] = [size // 2, 1]
    out = prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    assert_same_files(out, tiny_base())
    first, resumed = hub_env.gets("model.pth")
    start = int(resumed.removeprefix("bytes=").rstrip("-"))
    assert first is None and size // 2 - 2**20 <= start <= size // 2, resumed
    assert hub_env.sent["model.pth"] - size == size // 2 - start  # only the bytes in flight are sent twice
    record("dropped download", "model.pth, same run", survived=True)


def test_interrupted_download_resumes_on_the_next_run(hub_env, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "RETRIES", 1)
    size = (tiny_base() / "model.pth").stat().st_size
    hub_env.drop_after["model.pth"] = [size // 3, 99]
    with pytest.raises(XttsflowError, match=r"downloading model\.pth failed at .* run again to resume") as err:
        prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    assert "\n" not in str(err.value)
    part = list((tmp_path / "hf").rglob("*.part"))
    kept = part[0].stat().st_size if len(part) == 1 else None
    assert kept and size // 3 - 2**20 <= kept <= size // 3, part
    assert not (tmp_path / "base").exists()
    del hub_env.drop_after["model.pth"]
    out = prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    assert_same_files(out, tiny_base())
    assert hub_env.gets("model.pth")[-1] == f"bytes={kept}-"  # the next run starts where the part ends
    assert hub_env.sent["model.pth"] <= 2 * (size // 3) + size - kept  # (2 dropped tries + the rest)
    assert not list((tmp_path / "hf").rglob("*.part"))
    record("interrupted download", "model.pth, next run", survived=True)


def test_damaged_download_is_refused_and_removed(hub_env, tmp_path):
    store = hub_env.repos[REPO_ID]["config.json"]  # small: its ETag is git's blob sha1, as on the hub
    store.path = tmp_path / "wrong.json"
    store.path.write_bytes(b"x" * store.size)  # same size, other content: only the hash tells
    with pytest.raises(XttsflowError, match=r"config\.json arrived damaged \(git-sha1 .* removed"):
        prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    assert not list((tmp_path / "hf").rglob("*.part")) and not (tmp_path / "base").exists()
    record("damaged download", "config.json", survived=True)


def test_a_missing_file_is_named_with_its_repository(hub_env, tmp_path):
    hub_env.missing.add(f"{REPO_ID}/dvae.pth")
    with pytest.raises(XttsflowError, match=r"has no dvae\.pth of tts-hub/XTTS-v2 \(HTTP 404\)"):
        prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    hub_env.add_repo(REPO_ID, tiny_base(), names=[n for n in XTTS_FILES if n != "dvae.pth"])
    with pytest.raises(XttsflowError, match=r"repository tts-hub/XTTS-v2 .* has no dvae\.pth"):
        prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    assert not (tmp_path / "base").exists()
    record("missing model file", "dvae.pth (HTTP 404)", survived=True)
    record("missing model file", "dvae.pth (not listed)", survived=True)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_no_network_says_what_to_do_and_a_cached_copy_still_works(hub_env, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    with pytest.raises(XttsflowError, match="cannot download .* without internet, copy the model folder"):
        prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    monkeypatch.setenv("HF_ENDPOINT", hub_env.url)
    prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    # Offline afterwards (a cluster node sharing the cache): the cached snapshot is used, with no request.
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    assert_same_files(prepare_base_model(XTTS_V2, tmp_path / "base2", accept_cpml=True), tiny_base())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_same_files(prepare_base_model(XTTS_V2, tmp_path / "base3", accept_cpml=True), tiny_base())
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(XttsflowError, match="HF_HUB_OFFLINE is set and .* holds no complete tts-hub/XTTS-v2"):
        prepare_base_model(XTTS_V2, tmp_path / "base4", accept_cpml=True)
    record("no network", "hub unreachable", survived=True)


@pytest.fixture
def small_disk(tmpfs):
    """A 64 MB tmpfs (root only): smaller than the tiny model's 300 MB."""
    return tmpfs("64m")


def test_a_disk_too_small_is_said_before_anything_is_written(hub_env, small_disk, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(small_disk / "hf"))
    with pytest.raises(XttsflowError, match=r"not enough disk space .* needs 3\d\d\.\d MB and 6\d\.\d MB are free"):
        prepare_base_model(XTTS_V2, tmp_path / "base", accept_cpml=True)
    assert not [p for p in (small_disk / "hf").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert hub_env.gets("model.pth") == []
    record("disk too small for a download", "64 MB tmpfs", survived=True)


def test_faster_whisper_by_name(hub_env, tmp_path):
    """`transcribe.model: large-v3` fetches Systran/faster-whisper-large-v3 (here: the bundled tiny.en under that
    name) and transcribes real speech with it."""
    hub_env.add_repo("Systran/faster-whisper-large-v3", Path(resolve_model("bundled:tiny.en")))
    wav = tmp_path / "hello.wav"
    write_wav(wav, espeak("The ships came back to the harbour.", speed=150), 22050)
    options = {"device": "cpu", "compute_type": "int8"}
    def text(model: str) -> str:
        return make_transcriber(TranscribeConfig(model=model, **options)).transcribe([str(wav)], "en")[0]["text"]

    by_name = text("large-v3")
    assert "ship" in by_name.lower() and "came back" in by_name.lower(), by_name
    assert by_name == text("bundled:tiny.en")
    assert hub_env.gets("model.bin") == [None]


def tiny_whisper_alignment() -> bytes:
    return base64.b85encode(gzip.compress(np.ones((2, 2), dtype=bool).tobytes()))


def test_openai_whisper_by_name_from_its_own_urls(server, tmp_path, monkeypatch):
    """openai-whisper's URL scheme (sha256 in the path) through a mirror on 127.0.0.1; a wrong file is refused."""
    import whisper
    from asr_fixtures import build_tiny_whisper

    checkpoint = build_tiny_whisper(tmp_path / "src" / "tiny-test.pt", text=" hello", language="en")
    digest = sha256(checkpoint)
    route = f"/main/whisper/models/{digest}/tiny-test.pt"
    server.add_file(route, checkpoint)
    monkeypatch.setitem(whisper._MODELS, "tiny-test", WHISPER_HOST + route)
    monkeypatch.setitem(whisper._ALIGNMENT_HEADS, "tiny-test", tiny_whisper_alignment())
    monkeypatch.setenv("XTTSFLOW_WHISPER_MIRROR", server.url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_transcriber(TranscribeConfig(backend="openai-whisper", model="tiny-test", device="cpu"))
    assert sha256(tmp_path / "cache" / "whisper" / "tiny-test.pt") == digest
    # The real "tiny" name carries the real checkpoint's sha256: the mirror's wrong file is caught and removed.
    server.add_file(whisper._MODELS["tiny"][len(WHISPER_HOST):], checkpoint)
    with pytest.raises(XttsflowError, match=r"tiny\.pt arrived damaged \(sha256 .*removed"):
        make_transcriber(TranscribeConfig(backend="openai-whisper", model="tiny", device="cpu"))
    assert not (tmp_path / "cache" / "whisper" / "tiny.pt").exists()


@pytest.mark.slow
def test_workflow_trains_xtts_by_name(server, tmp_path, make_speech):
    """base_model by name (served under XTTS-v2's repository) -> train -> export, in one real snakemake run."""
    server.add_repo(REPO_ID, tiny_base())
    speech = make_speech(["The lighthouse keeper counted the ships.", "A storm came over the grey sea.",
                          "By morning the harbour was calm.", "The boats went out again at noon."], [0.9, 0.9, 0.9])
    write_wav(tmp_path / "recordings" / "take1.wav", speech.samples, speech.sample_rate)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update({"sources": [{"path": "recordings/take1.wav", "speaker": "lea", "language": "en"}],
                   "until": "train", "segment": {"min_duration": 2.0, "max_duration": 8.0},
                   "dataset": {"min_duration": 1.0}})
    config["train"].update({"base_model": XTTS_V2, "accept_cpml": True, "max_steps": 2, "batch_size": 2})
    write_config(tmp_path, config)
    env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf")}
    snakemake(tmp_path, "--cores", "2", env=env)
    assert_same_files(tmp_path / "models" / "base", tiny_base())
    assert (tmp_path / "checkpoints" / "main" / "export" / "model.pth").is_file()
    log = (tmp_path / "logs" / "base_model.log").read_text()
    assert "dvae.pth complete" in log and "model.pth complete" in log


def test_fetch_models_command_prefetches_both_models(server, tmp_path):
    """`xttsflow fetch-models` as a user runs it on a login node: the base model and the Whisper model."""
    import sys

    server.add_repo(REPO_ID, tiny_base())
    server.add_repo("Systran/faster-whisper-large-v3", Path(resolve_model("bundled:tiny.en")))
    write_config(tmp_path, {"sources": [{"path": "recordings", "speaker": "ana", "language": "en"}],
                            "transcribe": {"model": "large-v3"}, "train": {"base_model": XTTS_V2, "accept_cpml": True}})
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "xttsflow.cli", "fetch-models"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert_same_files(tmp_path / "models" / "base", tiny_base())
    whisper_dir = Path(proc.stdout.split("whisper model: ", 1)[1].split()[0])
    assert (whisper_dir / "model.bin").is_file() and str(whisper_dir).startswith(str(tmp_path / "hf"))
    # Without internet afterwards, the copied caches are enough: HF_HUB_OFFLINE runs it with no request.
    before = len(server.requests)
    env["HF_HUB_OFFLINE"] = "1"
    rerun = subprocess.run([sys.executable, "-m", "xttsflow.cli", "fetch-models"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert len(server.requests) == before
