"""Training data: the LJSpeech/coqui dataset read by coqui-tts, screened against XTTS's limits, served in a
resumable order.

coqui's XTTSDataset silently swaps clips it cannot use for other clips and draws its order from the global
`random` module; here unusable clips are counted and reported up front, and the order and conditioning
slices are functions of (seed, epoch, position), so a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
import torch

from . import TRAIN_SAMPLE_RATE, XTTS_MAX_WAV_SAMPLES, paths
from .atomic import read_json
from .errors import XttsflowError
from .gpt_model import MAX_CONDITIONING_SAMPLES, MAX_TEXT_TOKENS, MIN_CONDITIONING_SAMPLES, coqui_gpt_trainer

log = logging.getLogger(__name__)

MIN_WAV_SAMPLES = TRAIN_SAMPLE_RATE // 2  # coqui's dataset drops clips under 0.5 s
SPLITS = {"train": paths.METADATA_TRAIN, "val": paths.METADATA_VAL}


@dataclass
class Clips:
    """The usable clips of one split and why the others were left out."""

    samples: list[dict]
    rejected: Counter = field(default_factory=Counter)


def dataset_configs(dataset_dir: Path, language: str | None) -> list[dict]:
    """coqui BaseDatasetConfig fields for the dataset: from its stats.json, else LJSpeech layout + `language`."""
    stats = dataset_dir / paths.STATS
    if stats.is_file():
        entries = read_json(stats).get("datasets") or []
        if entries:
            return [
                {**e, "path": str((dataset_dir / e.get("path", ".")).resolve()), "language": language or e["language"]}
                for e in entries
            ]
    if not language:
        raise XttsflowError(
            f"train: {dataset_dir} has no stats.json naming its language — set train.language (e.g. en, pt)"
        )
    return [{"formatter": "ljspeech", "path": str(dataset_dir.resolve()), "meta_file_train": SPLITS["train"],
             "meta_file_val": SPLITS["val"], "language": language}]


def read_split(dataset_dir: str | Path, split: str, language: str | None = None) -> list[dict]:
    """One split's samples ({text, audio_file, language, speaker_name}) through coqui-tts's formatters."""
    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.datasets import load_tts_samples

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise XttsflowError(
            f"train: dataset folder {dataset_dir} does not exist — build it first (snakemake dataset/stats.json) "
            "or give the train CLI an LJSpeech-layout folder (--dataset)"
        )
    samples = []
    for entry in dataset_configs(dataset_dir, language):
        meta = Path(entry["path"]) / entry[f"meta_file_{split}"]
        if not meta.is_file():
            raise XttsflowError(f"train: {meta} is missing — rebuild the dataset (dataset stage)")
        if not meta.read_text(encoding="utf-8", errors="replace").strip():
            continue
        entry = {**entry, "meta_file_train": entry[f"meta_file_{split}"], "meta_file_val": ""}
        config = coqui_gpt_trainer().GPTTrainerConfig(datasets=[BaseDatasetConfig(**entry)])
        try:
            found, _ = load_tts_samples(config, eval_split=False)
        except (AssertionError, IndexError, KeyError, ValueError) as err:
            raise XttsflowError(f"train: {paths.damaged(meta, f'not LJSpeech/coqui metadata: {err}')}") from err
        samples.extend(found)
    return samples


def screen(samples: list[dict], tokenizer, where: str) -> Clips:
    """Keep the clips XTTS trains on (readable audio of 0.5 s..11.6 s, text of 1..200 tokens, no unknown chars)."""
    kept, rejected = [], Counter()
    for sample in samples:
        reason = _problem(sample, tokenizer)
        if reason:
            rejected[reason] += 1
            log.debug("%s: leaving out %s (%s)", where, sample["audio_file"], reason)
        else:
            kept.append(sample)
    if rejected:
        log.warning("%s: %d of %d clips left out: %s", where, sum(rejected.values()), len(samples), dict(rejected))
    return Clips(kept, rejected)


def _problem(sample: dict, tokenizer) -> str | None:
    path = Path(sample["audio_file"])
    try:
        info = sf.info(path)
    except (RuntimeError, OSError, sf.LibsndfileError):
        return "missing or unreadable audio"
    samples_at_train_rate = info.frames * TRAIN_SAMPLE_RATE / info.samplerate
    if samples_at_train_rate > XTTS_MAX_WAV_SAMPLES:
        return f"longer than XTTS's limit of {XTTS_MAX_WAV_SAMPLES / TRAIN_SAMPLE_RATE:.2f} s"
    if samples_at_train_rate < MIN_WAV_SAMPLES:
        return "shorter than 0.5 s"
    text = str(sample.get("text") or "").strip()
    if not text:
        return "empty text"
    try:
        tokens = tokenizer.encode(text, sample["language"])
    except (NotImplementedError, KeyError, ValueError, ImportError) as err:
        return f"text cannot be tokenized ({err})"
    if len(tokens) > MAX_TEXT_TOKENS:
        return f"text over {MAX_TEXT_TOKENS} tokens"
    if 1 in tokens or 0 in tokens:  # [UNK] / [STOP]: coqui's dataset asserts on both
        return "characters the tokenizer does not know"
    return None


def require_clips(clips: Clips, meta: Path, split: str) -> None:
    if clips.samples:
        return
    if not clips.rejected:
        raise XttsflowError(f"train: {meta} lists no clips — the {split} split is empty; {paths.remake(meta)}")
    reasons = ", ".join(f"{n} {why}" for why, n in clips.rejected.most_common())
    raise XttsflowError(
        f"train: none of the {sum(clips.rejected.values())} clips in {meta} can be trained on ({reasons}) — "
        f"XTTS takes clips of 0.5-{XTTS_MAX_WAV_SAMPLES / TRAIN_SAMPLE_RATE:.2f} s with up to {MAX_TEXT_TOKENS} text "
        "tokens; re-segment or rebuild the dataset with those limits"
    )


class ClipDataset(torch.utils.data.Dataset):
    """XTTS training items from coqui's own loaders; indexed by (clip index, item seed)."""

    def __init__(self, samples: list[dict], tokenizer, is_eval: bool = False):
        self.samples = samples
        self.tokenizer = tokenizer
        self.is_eval = is_eval
        self._lengths: list[int] | None = None

    def lengths(self) -> list[int]:
        """Audio frames of each clip (read once)."""
        if self._lengths is None:
            self._lengths = clip_lengths(self.samples)
        return self._lengths

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        from TTS.tts.models.xtts import load_audio

        index, item_seed = key
        sample = self.samples[index]
        tokens = torch.IntTensor(self.tokenizer.encode(str(sample["text"]), sample["language"]))
        wav = load_audio(sample["audio_file"], TRAIN_SAMPLE_RATE)
        cond, cond_idxs = self._conditioning(wav, random.Random(item_seed))
        return {
            "text": tokens,
            "text_lengths": torch.tensor(tokens.shape[0], dtype=torch.long),
            "wav": wav,
            "wav_lengths": torch.tensor(wav.shape[-1], dtype=torch.long),
            "filenames": sample["audio_file"],
            "conditioning": cond.unsqueeze(1),
            "cond_lens": torch.tensor([torch.nan]),  # the masking approach (XTTS-v2) uses cond_idxs instead
            "cond_idxs": torch.tensor(cond_idxs),
        }

    def _conditioning(self, wav: torch.Tensor, rng: random.Random):
        """A 3-6 s slice of the clip itself, padded to 6 s: coqui's get_prompt_slice with a local RNG."""
        lo, hi = MIN_CONDITIONING_SAMPLES, MAX_CONDITIONING_SAMPLES
        length = (lo + hi) // 2 if self.is_eval else rng.randint(lo, hi)
        if wav.shape[-1] - length < 0:
            length = wav.shape[-1] // 2
        start = 0 if self.is_eval else rng.randint(0, wav.shape[-1] - length)
        clip = wav[:, start : start + length]
        clip = torch.nn.functional.pad(clip, (0, hi - clip.shape[-1]))
        return clip, [start, start + length]


def collate(batch: list[dict]) -> dict:
    """coqui's XTTSDataset.collate_fn (it uses nothing of the dataset object)."""
    coqui_gpt_trainer()  # imports the dataset module without letting it change the thread count
    from TTS.tts.layers.xtts.trainer.dataset import XTTSDataset

    return XTTSDataset.collate_fn(None, batch)


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool = True, lengths: list[int] | None = None,
                group_batches: int = 0, batch_size: int = 1) -> list[int]:
    """The clip indices of one epoch, a function of (seed, epoch) only: shuffled, optionally length-grouped.

    Grouped (group_batches > 0, coqui's batch_group_size): the shuffled clips are cut into groups of
    group_batches x batch_size, each group is sorted by `lengths` and cut into batches, and the full
    batches are shuffled; a short last batch stays last, so cutting the list every batch_size items
    gives back exactly these batches (which is what the DataLoader and a resume by position do).
    """
    if not shuffle:
        return list(range(size))
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    if not group_batches or lengths is None or batch_size < 2:
        return order
    group = group_batches * batch_size
    batches = []
    for start in range(0, size, group):
        chunk = sorted(order[start : start + group], key=lambda i: (lengths[i], i))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]
    shuffled = [full[k] for k in torch.randperm(len(full), generator=generator).tolist()]
    return [i for batch in shuffled + short for i in batch]


def clip_lengths(samples: list[dict]) -> list[int]:
    """Each clip's length in audio frames (the GPT's audio codes follow it), read from the file headers."""
    return [sf.info(sample["audio_file"]).frames for sample in samples]


def rank_positions(size: int, batch_size: int, rank: int = 0, world: int = 1) -> list[int]:
    """The positions of an epoch's order that rank `rank` of `world` reads, in order.

    The order is cut into global batches of batch_size x world; each rank takes its own consecutive
    slice of every one (as evenly as the last one allows), so the ranks' batches together are exactly
    the batches of one process with batch_size x world.
    """
    if world == 1:
        return list(range(size))
    positions, step = [], batch_size * world
    for start in range(0, size, step):
        count = min(step, size - start)
        positions += range(start + rank * count // world, start + (rank + 1) * count // world)
    return positions


def usable_clips(size: int, world: int, train: bool = True) -> int:
    """Clips one training epoch reads: a multiple of the ranks, so that every rank steps as often as the others
    (a rank without a batch would leave the others waiting for its gradients); all of them at world size 1."""
    return size - size % world if train else size


class EpochOrder(torch.utils.data.Sampler):
    """One epoch's order (epoch_order) from `skip` items in, with each item's seed: resumable exactly.

    With world > 1 it serves rank `rank`'s share (rank_positions); `skip` counts the clips of all ranks."""

    def __init__(self, size: int, seed: int, epoch: int, skip: int = 0, shuffle: bool = True,
                 lengths: list[int] | None = None, group_batches: int = 0, batch_size: int = 1,
                 rank: int = 0, world: int = 1):
        order = epoch_order(size, seed, epoch, shuffle, lengths, group_batches, batch_size * world)
        self.order = order[: usable_clips(len(order), world, train=shuffle)]
        self.positions = [p for p in rank_positions(len(self.order), batch_size, rank, world) if p >= skip]
        self.seed, self.epoch = seed, epoch

    def __iter__(self):
        for position in self.positions:
            yield self.order[position], hash((self.seed, self.epoch, position)) & 0x7FFFFFFF

    def __len__(self) -> int:
        return len(self.positions)


def loader(dataset: ClipDataset, batch_size: int, num_workers: int, seed: int, epoch: int, skip_batches: int = 0,
           group_batches: int = 0, rank: int = 0, world: int = 1):
    """Batches of one epoch from batch `skip_batches` on (train), or the whole split in order (eval).

    group_batches > 0 groups the batches by clip length (epoch_order). With world > 1, rank `rank`'s
    batches of batch_size clips (skip_batches counts global batches of batch_size x world)."""
    lengths = dataset.lengths() if group_batches and not dataset.is_eval else None
    order = EpochOrder(len(dataset), seed, epoch, skip_batches * batch_size * world, shuffle=not dataset.is_eval,
                       lengths=lengths, group_batches=group_batches, batch_size=batch_size, rank=rank, world=world)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=order, collate_fn=collate, num_workers=num_workers,
        # a private generator: worker seeding must not consume the global RNG that a resume restores
        generator=torch.Generator().manual_seed(seed + epoch), persistent_workers=False,
    )
