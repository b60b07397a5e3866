"""`xttsflow fetch-models`: download once, where there is internet, every model the config names.

The base model (train.base_model by name, into the Hugging Face cache and `models/base`) and the Whisper
model (transcribe.model by name, into its cache), so that the workflow then runs on nodes without
internet: copy `models/base` and the caches, or share them (docs/train.md, "Offline and cluster use").
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml

from . import cli
from .errors import XttsflowError

log = logging.getLogger(__name__)


def read_config(path: Path) -> dict:
    """The workflow config with every default filled in, as the rules see it."""
    from .config import validate_config

    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise XttsflowError(f"fetch-models: cannot read the config {path} ({err.strerror})") from None
    return validate_config(config)


def fetch_models(config: dict, workdir: Path) -> dict[str, str]:
    """Fetch the base model and the Whisper model `config` names; returns what went where."""
    from .asr import BACKENDS
    from .base_model import prepare_base_model
    from .settings import base_model_kind, load_settings

    done = {}
    train = load_settings(config.get("train", {}))
    spec = train.base_model_spec
    if base_model_kind(spec) == "name":
        done["base model"] = str(prepare_base_model(spec, workdir / "models" / "base", train.accept_cpml))
    model, backend = config["transcribe"]["model"], BACKENDS[config["transcribe"]["backend"]]
    path = backend.fetch(model)
    if path != model and not model.startswith("bundled:"):  # fetched by name (local and bundled: nothing to do)
        done["whisper model"] = path
    return done


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser("fetch-models", __doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--directory", type=Path, default=Path("."), help="the workflow's working folder")
    args = parser.parse_args(argv)
    setup_console()
    done = fetch_models(read_config(args.configfile), args.directory)
    for what, where in done.items():
        print(f"{what}: {where}")
    if not done:
        print("nothing to fetch: the config names no model by name")


if __name__ == "__main__":
    sys.exit(cli.run("fetch-models", main))
