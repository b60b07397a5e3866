"""The API server as users run it (`python -m xttsflow.api` in a subprocess on a free loopback port), a
workflow folder whose fine-tuned export carries a named voice, and Debian's Chromium for the pages."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m xttsflow.api` in a subprocess; stopped (by its pid) when the test module is done."""

    def __init__(self, workdir, log_path, *args, env=None, host="127.0.0.1"):
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.log = open(log_path, "w+")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xttsflow.api", "--workdir", str(workdir), "--host", host,
             "--port", str(self.port), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )

    def wait(self, timeout: float = 300) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"server did not come up in {timeout} s:\n{self.output()}")

    def output(self, tail: int = 5000) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-tail:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def __enter__(self) -> Server:
        """`with Server(...) as srv:` — up and answering inside, stopped after (also when the start fails)."""
        try:
            return self.wait()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def voiced_workdir(eval_workdir, tmp_path_factory) -> Path:
    """eval_workdir (hard-linked: nothing is written through the links) with evaluation references and the
    dataset's speaker `demo` added to the run's export as a named voice, as the train stage's export does."""
    from xttsflow.evaluate import choose_references
    from xttsflow.options import EvaluateConfig
    from xttsflow.voices import add_dataset_voices

    root = tmp_path_factory.mktemp("voiced") / "work"
    shutil.copytree(eval_workdir, root, copy_function=os.link)
    choose_references(root / "dataset", [root / "transcripts" / "demo-0a1b2c3d.json"],
                      EvaluateConfig(num_references=1),
                      root / "samples" / "main" / "references.json")
    add_dataset_voices(root / "checkpoints" / "main" / "export", root / "dataset", device="cpu")
    return root


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright (its own browsers are not used: no download)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is needed (make system-deps installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield chromium
        finally:
            chromium.close()
