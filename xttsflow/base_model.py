"""The base model to fine-tune: builtin:tiny, builtin:xtts-v2-size, a coqui-tts model name, or a local XTTS folder.

The two builtins are random weights built here, offline: builtin:tiny a 2-layer, 64-channel GPT (demo,
tests), builtin:xtts-v2-size XTTS-v2's own dimensions (real-size memory and speed, no download).

A name is looked up in coqui-tts's model list (which hub repository holds it) and fetched with
xttsflow.hub: every file training needs, including the two that coqui's list leaves out for inference
(`dvae.pth`, and `mel_stats.pth` where absent) — resumable, verified, into the Hugging Face cache. XTTS-v2
is under the Coqui Public Model License (CPML); nothing is requested before the user accepted it:
`train.accept_cpml: true` or COQUI_TOS_AGREED=1 in the environment. Nothing here accepts it on the
user's behalf.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from . import cli
from .atomic import atomic_dir, link_or_copy
from .errors import XttsflowError
from .hub import hub_snapshot
from .settings import BUILTIN_TINY, BUILTIN_XTTS_V2_SIZE, BUILTINS, base_model_kind
from .xtts_model import XTTS_FILES, build_tiny_checkpoint, build_xtts_v2_size_checkpoint, check_layout

log = logging.getLogger(__name__)

CPML = "https://coqui.ai/cpml"


def cpml_accepted(accept_cpml: bool) -> bool:
    return accept_cpml or os.environ.get("COQUI_TOS_AGREED") == "1"


def model_item(name: str, models_file: str | Path | None = None) -> dict:
    """coqui-tts's entry for a model name (its hub repository, licence); read from its list, no network."""
    from TTS.utils.manage import ModelManager

    try:
        item, _, _ = ModelManager(models_file=models_file, progress_bar=False)._set_model_item(name)
    except (KeyError, ValueError) as err:
        raise XttsflowError(f"train: {name!r} is not a coqui-tts model name (e.g. tts_models/multilingual/"
                            "multi-dataset/xtts_v2)") from err
    return item


def download(name: str, accept_cpml: bool, models_file: str | Path | None = None) -> Path:
    """Fetch the XTTS model `name` (after the licence check) and return its folder in the hub cache."""
    item = model_item(name, models_file)
    if (item.get("tos_required") or item.get("license") == "CPML") and not cpml_accepted(accept_cpml):
        raise XttsflowError(
            f"train: {name} is licensed under the Coqui Public Model License ({CPML}), which you must accept "
            "yourself before it is downloaded: set train.accept_cpml: true in the config (or COQUI_TOS_AGREED=1 "
            "in the environment), or use a local model folder / builtin:tiny"
        )
    if "repo_id" not in item or "xtts" not in name:
        raise XttsflowError(f"train: {name} is not an XTTS model on the Hugging Face hub — xttsflow fine-tunes "
                            "XTTS (tts_models/multilingual/multi-dataset/xtts_v2)")
    return hub_snapshot(item["repo_id"], tuple(XTTS_FILES), what=f"train: {name}", required=tuple(XTTS_FILES))


def prepare_base_model(spec: str, out_dir: str | Path, accept_cpml: bool = False, seed: int = 0,
                       models_file: str | Path | None = None) -> Path:
    """Make `out_dir` an XTTS folder of the base model that `spec` names (built, downloaded or linked)."""
    out_dir = Path(out_dir)
    if base_model_kind(spec) == "builtin":
        builders = {BUILTIN_TINY: build_tiny_checkpoint, BUILTIN_XTTS_V2_SIZE: build_xtts_v2_size_checkpoint}
        if spec not in builders:
            raise XttsflowError(f"train: unknown builtin model {spec!r} (there are {' and '.join(BUILTINS)})")
        return builders[spec](out_dir, seed=seed)
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
    parser.add_argument("spec", help="builtin:tiny, builtin:xtts-v2-size, a coqui-tts model name, or a folder in "
                        "XTTS's layout")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--accept-cpml", action="store_true", help="you accept the Coqui Public Model License")
    parser.add_argument("--seed", type=int, default=0, help="seed of a builtin model's random weights")
    args = parser.parse_args(argv)
    setup_console()
    print(prepare_base_model(args.spec, args.out_dir, args.accept_cpml, args.seed))


if __name__ == "__main__":
    sys.exit(cli.run("base_model", main))
