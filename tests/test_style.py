"""The repository stays lint-clean: ruff for Python, `snakemake --lint` for the workflow."""

import subprocess
import sys

from conftest import REPO


def test_ruff_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_every_rule_script_only_translates():
    """Rule scripts are glue: they read snakemake.* and call the package, in a handful of lines."""
    for script in sorted((REPO / "scripts").glob("*.py")):
        code = [ln for ln in script.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(code) <= 30, f"{script.name} has {len(code)} lines of code: move the logic into xttsflow/"
        assert "snakemake." in script.read_text(), f"{script.name} does not read snakemake.*"
