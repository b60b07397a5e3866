"""Padding benchmark: the share of padded text and audio-code positions per batch, random vs length-grouped.

    .venv/bin/python benchmarks/bench_padding.py                   # 2,000 clips of 5-11 s, batch 2/4/8
    .venv/bin/python benchmarks/bench_padding.py --dataset dataset # a real dataset's clips (LJSpeech layout)

The batches are the train loop's own (xttsflow.train_data.epoch_order, the order the DataLoader cuts
into batches), over 3 epochs. Audio codes per clip follow the audio (1 code per 1024 samples at
22050 Hz); text tokens follow the text (synthetic clips: ~15 characters a second, +-25%, ~3 characters a
token, as XTTS's BPE on English). Padding share = padded positions / all positions of the padded batches.
Baseline: today's random batches (batch_group_size 0); target (issue 15): <= 5% of audio positions at
batch 8 with batch_group_size 48 (coqui's recipe).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CODE_STRIDE = 1024


def synthetic(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Audio frames (5-11 s, uniform) and text tokens (speech rate varying +-25%) of `n` clips."""
    rng = np.random.default_rng(seed)
    seconds = rng.uniform(5.0, 11.0, n)
    chars = seconds * 15 * rng.uniform(0.75, 1.25, n)
    return [int(s * 22050) for s in seconds], [max(1, int(c / 3)) for c in chars]


def from_dataset(folder: Path) -> tuple[list[int], list[int]]:
    import soundfile as sf

    frames, tokens = [], []
    for line in (folder / "metadata_train.csv").read_text(encoding="utf-8").splitlines():
        parts = line.split("|")
        if len(parts) < 2:
            continue
        wav = folder / "wavs" / f"{parts[0]}.wav"
        frames.append(sf.info(wav).frames)
        tokens.append(max(1, len(parts[-1]) // 3))
    return frames, tokens


def padding(frames: list[int], tokens: list[int], batch: int, group: int, epochs: int = 3) -> tuple[float, float]:
    from xttsflow.train_data import epoch_order

    codes = [f // CODE_STRIDE + 1 for f in frames]
    padded = {"audio": [0, 0], "text": [0, 0]}
    for epoch in range(epochs):
        order = epoch_order(len(frames), 1234, epoch, lengths=frames, group_batches=group, batch_size=batch)
        for start in range(0, len(order), batch):
            ids = order[start : start + batch]
            for key, lengths in (("audio", codes), ("text", tokens)):
                values = [lengths[i] for i in ids]
                padded[key][0] += max(values) * len(values) - sum(values)
                padded[key][1] += max(values) * len(values)
    return padded["audio"][0] / padded["audio"][1], padded["text"][0] / padded["text"][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="an LJSpeech-layout folder (metadata_train.csv, wavs/)")
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--group", type=int, default=48, help="batch_group_size (coqui's recipe: 48)")
    args = parser.parse_args()
    frames, tokens = from_dataset(args.dataset) if args.dataset else synthetic(args.clips)
    what = str(args.dataset) if args.dataset else f"{args.clips} synthetic clips of 5-11 s"
    print(f"{what}; padded share of positions over 3 epochs; grouped = batch_group_size {args.group}\n")
    print(f"{'batch':>5s} {'audio random':>13s} {'audio grouped':>14s} {'ratio':>6s} {'text random':>12s} "
          f"{'text grouped':>13s} {'ratio':>6s}")
    results = {}
    for batch in (2, 4, 8):
        ra, rt = padding(frames, tokens, batch, 0)
        ga, gt = padding(frames, tokens, batch, args.group)
        results[batch] = ga
        print(f"{batch:5d} {100 * ra:12.1f}% {100 * ga:13.1f}% {ga / ra:6.2f} {100 * rt:11.1f}% {100 * gt:12.1f}% "
              f"{gt / rt:6.2f}")
    verdict = "met" if results[8] <= 0.05 else "NOT met"
    print(f"\naudio padding at batch 8, grouped: {100 * results[8]:.1f}% (target <= 5%: {verdict})")


if __name__ == "__main__":
    main()
