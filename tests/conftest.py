"""Shared test helpers: real speech (espeak-ng, LJSpeech fixtures) and real Snakemake runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from xttsflow.demo import Speech, speech_with_pauses

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
FIXTURES = Path(os.environ.get("XTTSFLOW_FIXTURES", REPO.parent / "shared" / "fixtures"))
# The suite's peak use of its temporary folder is ~6.4 GB (measured on a clean clone's `make test`, with
# passed tests' folders removed as they end); with less free space its workflow runs fail one after another
# with misleading errors, so it stops at once instead.
NEEDED_FREE_GB = 8


def pytest_sessionstart(session):
    where = Path(session.config.option.basetemp or tempfile.gettempdir())
    where = next(p for p in (where, *where.parents) if p.exists())
    free_gb = shutil.disk_usage(where).free / 1e9
    if free_gb < NEEDED_FREE_GB:
        pytest.exit(f"only {free_gb:.1f} GB free at {where}; the tests need {NEEDED_FREE_GB} GB "
                    "(free some space, or point --basetemp at a larger disk)", returncode=3)


def pytest_collection_modifyitems(config, items):
    """Real-size tests (~10 GB, ~10 min) run only when -m names them (make test-realsize), never by default."""
    if "realsize" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="XTTS-v2-size test: run it with make test-realsize (pytest -m realsize)")
    for item in items:
        if item.get_closest_marker("realsize"):
            item.add_marker(skip)
@pytest.fixture(scope="session")
def ljspeech_dir() -> Path:
    """Five transcribed LJSpeech clips (+ 24 unlabeled); skips where ../shared/fixtures is absent."""
    path = FIXTURES / "ljspeech"
    if not (path / "metadata.csv").is_file():
        pytest.skip(f"LJSpeech fixtures not found at {path} (set XTTSFLOW_FIXTURES to the shared/fixtures folder)")
    return path


@pytest.fixture(scope="session")
def make_speech():
    """Cached espeak-ng speech with known pauses: make_speech(texts, pauses_s, **kw) -> Speech."""
    cache: dict = {}

    def make(texts: list[str], pauses_s: list[float], **kw) -> Speech:
        key = (tuple(texts), tuple(pauses_s), tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = speech_with_pauses(texts, pauses_s, **kw)
        return cache[key]

    return make


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size) -> a freshly mounted tmpfs of that size (e.g. "64m") under tmp_path, unmounted afterwards;
    skips with the reason where mounting is not allowed (it needs root)."""
    mounts = []

    def mount(size: str) -> Path:
        where = tmp_path / f"tmpfs-{len(mounts)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a {size} tmpfs here (needs root): {proc.stderr.decode().strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", "-l", str(where)], check=False)


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 900,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real workflow in `workdir` (which holds config/config.yaml) and return the process;
    `env` adds variables to the environment."""
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs per rule in the dry-run plan (empty when there is nothing to do)."""
    proc = snakemake(workdir, "--dry-run", *args)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts


def tone(seconds: float, sample_rate: int = 22050, freq: float = 220.0, dbfs: float = -12.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (np.sin(2 * np.pi * freq * t) * 10 ** (dbfs / 20)).astype(np.float32)


def pytest_terminal_summary(terminalreporter):
    """The fault-injection suite's tally (tests/test_faults.py), when it ran."""
    from faultlog import FAULTS, summary

    if FAULTS:
        terminalreporter.section("fault injection")
        for line in summary():
            terminalreporter.write_line(line)
