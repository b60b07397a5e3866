"""One command-line shape: `xttsflow <stage>` for every stage, `xttsflow <stage>: <message>` on failure,
exit 2 for usage errors and 1 for a failed run, and a traceback only with --debug."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from conftest import REPO

from xttsflow import cli


def run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("stage", sorted(cli.STAGES))
def test_every_stage_says_its_usage(stage, capsys):
    module = importlib.import_module(cli.module_name(stage))
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith(f"usage: xttsflow {stage} ") and "--debug" in out


def test_python_m_and_the_console_script_agree():
    direct = run("-m", "xttsflow.transcribe", "--help")
    through = run("-m", "xttsflow.cli", "transcribe", "--help")
    assert direct.returncode == through.returncode == 0
    assert direct.stdout.startswith("usage: xttsflow transcribe ") and direct.stdout == through.stdout
    listing = run("-m", "xttsflow.cli")
    assert listing.returncode == 2 and all(f"  {stage} " in listing.stdout for stage in cli.STAGES)
    unknown = run("-m", "xttsflow.cli", "transcibe")
    assert unknown.returncode == 2 and "xttsflow: unknown stage 'transcibe'" in unknown.stderr


def test_a_failed_run_is_one_line_and_exit_1(tmp_path):
    proc = run("-m", "xttsflow.transcribe", str(tmp_path / "nowhere.wav"), "--model", "bundled:tiny.en")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    missing = tmp_path / "nowhere.wav"
    assert proc.stderr.strip().splitlines()[-1] == f"xttsflow transcribe: {missing}: no such file or folder"
    debug = run("-m", "xttsflow.transcribe", str(tmp_path / "nowhere.wav"), "--debug")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == proc.stderr.strip().splitlines()[-1]


def test_usage_errors_exit_2_naming_the_option(tmp_path):
    bad_choice = run("-m", "xttsflow.transcribe", "a.wav", "--device", "tpu")
    assert bad_choice.returncode == 2 and bad_choice.stderr.startswith("usage: xttsflow transcribe ")
    assert "xttsflow transcribe: error: argument --device: invalid choice: 'tpu'" in bad_choice.stderr
    out_of_range = run("-m", "xttsflow.cli", "transcribe", "a.wav", "--beam-size", "0")
    assert out_of_range.returncode == 2 and "Traceback" not in out_of_range.stderr
    assert out_of_range.stderr.strip() == (
        "xttsflow transcribe: beam_size: Input should be greater than or equal to 1 (got '0')")
    manifest_without_out = run("-m", "xttsflow.transcribe", "segments/x.json")
    assert manifest_without_out.returncode == 2 and "a segments manifest goes alone, with --out" in (
        manifest_without_out.stderr)


def test_an_unexpected_error_hides_its_traceback_unless_debug(tmp_path):
    """A missing file that no check words for the user: still one line, and --debug anywhere shows where."""
    score = ["score", "--model", "real", "--references", str(tmp_path / "none.json"), "--out", str(tmp_path / "s.json")]
    proc = run("-m", "xttsflow.evaluate", *score)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("xttsflow evaluate: FileNotFoundError: ") and "none.json" in last
    assert last.endswith("(run with --debug for the traceback)")
    debug = run("-m", "xttsflow.cli", "evaluate", *score, "--debug")  # after the subcommand's own options
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("xttsflow evaluate: FileNotFoundError: ")
    assert not (tmp_path / "s.json").exists()
