"""The base model to fine-tune: builtin:tiny, a coqui-tts model name, or a local folder in XTTS's layout.

A name is downloaded by coqui-tts's ModelManager (needs internet). XTTS-v2 is under the Coqui Public Model
License (CPML); it is downloaded only when the user accepted it: `train.accept_cpml: true` or
COQUI_TOS_AGREED=1 in the environment. Nothing here accepts it on the user's behalf.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from . import cli
from .atomic import atomic_dir, link_or_copy
from .errors import XttsflowError
from .settings import BUILTIN_TINY, base_model_kind
from .xtts_model import XTTS_FILES, build_tiny_checkpoint, check_layout

log = logging.getLogger(__name__)

CPML = "https://coqui.ai/cpml"


def cpml_accepted(accept_cpml: bool) -> bool:
    return accept_cpml or os.environ.get("COQUI_TOS_AGREED") == "1"


@contextlib.contextmanager
def _tos_env(accepted: bool) -> Iterator[None]:
    """coqui's ModelManager asks on stdin unless COQUI_TOS_AGREED=1; set it only for a user who accepted."""
    old = os.environ.get("COQUI_TOS_AGREED")
    if accepted:
        os.environ["COQUI_TOS_AGREED"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COQUI_TOS_AGREED", None)
        else:
            os.environ["COQUI_TOS_AGREED"] = old


def download(name: str, accept_cpml: bool, models_file: str | Path | None = None) -> Path:
    """Download a coqui-tts model by name (after the licence check) and return its folder."""
    from TTS.utils.manage import ModelManager

    if not cpml_accepted(accept_cpml):
        raise XttsflowError(
            f"train: {name} is licensed under the Coqui Public Model License ({CPML}), which you must accept "
            "yourself before it is downloaded: set train.accept_cpml: true in the config (or COQUI_TOS_AGREED=1 "
            "in the environment), or use a local model folder / builtin:tiny"
        )
    manager = ModelManager(models_file=models_file, progress_bar=False)
    try:
        with _tos_env(True):
            model_path, _, _ = manager.download_model(name)
    except (KeyError, ValueError) as err:
        raise XttsflowError(f"train: {name!r} is not a coqui-tts model name (e.g. tts_models/multilingual/"
                            "multi-dataset/xtts_v2)") from err
    except (OSError, RuntimeError) as err:  # requests' errors are OSErrors
        raise XttsflowError(
            f"train: downloading {name} failed ({type(err).__name__}: {err}) — without internet, copy the model "
            "folder here and set train.base_model to it"
        ) from err
    folder = Path(model_path)
    return folder if folder.is_dir() else folder.parent


def prepare_base_model(spec: str, out_dir: str | Path, accept_cpml: bool = False, seed: int = 0,
                       models_file: str | Path | None = None) -> Path:
    """Make `out_dir` an XTTS folder of the base model that `spec` names (built, downloaded or linked)."""
    out_dir = Path(out_dir)
    if base_model_kind(spec) == "builtin":
        if spec != BUILTIN_TINY:
            raise XttsflowError(f"train: unknown builtin model {spec!r} (there is {BUILTIN_TINY})")
        return build_tiny_checkpoint(out_dir, seed=seed)
    source = download(spec, accept_cpml, models_file) if base_model_kind(spec) == "name" else Path(spec)
    check_layout(source)
    with atomic_dir(out_dir) as tmp:
        for name in XTTS_FILES:
            link_or_copy(source / name, tmp / name)
    log.info("base model %s -> %s", spec, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser("base_model", __doc__.splitlines()[0])
    parser.add_argument("spec", help="builtin:tiny, a coqui-tts model name, or a folder in XTTS's layout")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--accept-cpml", action="store_true", help="you accept the Coqui Public Model License")
    parser.add_argument("--seed", type=int, default=0, help="seed of the builtin:tiny random weights")
    args = parser.parse_args(argv)
    setup_console()
    print(prepare_base_model(args.spec, args.out_dir, args.accept_cpml, args.seed))


if __name__ == "__main__":
    sys.exit(cli.run("base_model", main))
