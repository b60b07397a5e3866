"""Re-export a finished run: the LoRA adapter and the merged model as a standard XTTS folder, from a checkpoint.

The export holds model.pth with the adapters merged into the GPT weights, plus the base model's
config.json, vocab.json, dvae.pth, mel_stats.pth and speakers_xtts.pth, so coqui-tts
(`Xtts.load_checkpoint`) and the XTTS tools users already run load it like the original model;
speakers_xtts.pth also holds the dataset's speakers as named voices (xttsflow.voices). Training writes it
itself (xtts_model.export_model); this module makes it again from the run's best or last checkpoint.

`xttsflow export --base models/base --run checkpoints/main` re-exports a finished run.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from . import cli, paths
from .atomic import read_json


def export_run(base_dir: Path, run_dir: Path, out_dir: Path, which: str = "best") -> Path:
    """Re-export a run from its checkpoints (best or last) without training."""
    from .settings import TrainingSettings, load_settings
    from .train import Trainer  # imported here: torch and coqui-tts take seconds, --help should not

    summary = read_json(Path(run_dir) / paths.SUMMARY)
    # (summaries written before the folders stopped being settings list them among the settings)
    settings = {k: v for k, v in summary["settings"].items() if k in TrainingSettings.model_fields}
    settings = load_settings(None, env_file=None, **{**settings, "export_checkpoint": which})
    dataset = summary.get("dataset") or summary["settings"].get("dataset_dir", paths.DATASET)
    trainer = Trainer(settings, base_dir, dataset_dir=dataset, run_dir=run_dir)
    trainer.step, trainer.epoch = summary["steps"], summary["epochs"]
    trainer.best_val = summary["best_val_loss"] or math.inf
    trainer.history = summary["history"]
    trainer.finish(Path(out_dir))
    return Path(out_dir)


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = cli.parser("export", __doc__.splitlines()[0])
    parser.add_argument("--base", required=True, type=Path, help="base model folder in XTTS layout")
    parser.add_argument("--run", required=True, type=Path, help="the run's checkpoint folder (checkpoints/<run>)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--out", type=Path, help="export folder (default: <run>/export)")
    args = parser.parse_args(argv)
    setup_console()
    print(export_run(args.base, args.run, args.out or args.run / "export", args.checkpoint))


if __name__ == "__main__":
    sys.exit(cli.run("export", main))
