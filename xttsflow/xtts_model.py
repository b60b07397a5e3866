"""XTTS checkpoint folders: check their layout, load them through coqui-tts, build a tiny random one.

A folder in XTTS's layout holds model.pth (GPT + HiFi-GAN decoder), config.json, vocab.json (the BPE
tokenizer), dvae.pth (the discrete VAE that turns audio into GPT codes), mel_stats.pth (mel
normalisation) and speakers_xtts.pth (named speaker latents). The tiny model is the same architecture
with a 2-layer, 64-channel GPT and random weights, so tests and the offline demo exercise the exact
code path of the real XTTS-v2.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import OUTPUT_SAMPLE_RATE, TRAIN_SAMPLE_RATE, paths
from .atomic import atomic_dir, atomic_path, link_or_copy, read_json, write_json
from .errors import XttsflowError

log = logging.getLogger(__name__)

#: Every file of an XTTS checkpoint folder, and what it holds.
XTTS_FILES = {
    "model.pth": "GPT and HiFi-GAN decoder weights",
    "config.json": "model configuration",
    "vocab.json": "text tokenizer",
    "dvae.pth": "discrete VAE (audio -> GPT codes, needed for training)",
    "mel_stats.pth": "mel-spectrogram normalisation (needed for training)",
    "speakers_xtts.pth": "named speaker latents",
}
#: The files that inference reads; training needs all of XTTS_FILES.
INFERENCE_FILES = ("model.pth", "config.json", "vocab.json")

#: XTTS-v2 has 1024 DVAE codes plus a start and a stop token; coqui's GPTTrainer fixes the rest of the DVAE.
AUDIO_CODES = 1024
TINY_GPT = {"gpt_layers": 2, "gpt_n_model_channels": 64, "gpt_n_heads": 4}
#: XTTS-v2's own GPT (441 M parameters) and the size of its text vocabulary (its vocab.json has 6681 ids).
XTTS_V2_GPT = {"gpt_layers": 30, "gpt_n_model_channels": 1024, "gpt_n_heads": 16}
XTTS_V2_TEXT_TOKENS = 6681
_SPECIAL = ["[STOP]", "[UNK]", "[SPACE]"]  # ids 0, 1, 2 as in XTTS's vocab: the dataset asserts on 0 and 1
_LOAD_ERRORS = (RuntimeError, ValueError, KeyError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile)


def check_layout(folder: str | Path, required=tuple(XTTS_FILES)) -> Path:
    """Return `folder` as a Path, or raise naming every missing file of XTTS's layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise XttsflowError(
            f"XTTS checkpoint folder {folder} does not exist — give a folder in XTTS's layout "
            f"({', '.join(XTTS_FILES)})"
        )
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        what = "; ".join(f"{name} ({XTTS_FILES[name]})" for name in missing)
        raise XttsflowError(
            f"XTTS checkpoint folder {folder} is missing {what} — copy the complete folder "
            f"({', '.join(required)}) or rebuild it"
        )
    return folder


def read_config(folder: str | Path):
    """The folder's config.json as coqui's XttsConfig."""
    from TTS.tts.configs.xtts_config import XttsConfig

    path = Path(folder) / "config.json"
    config = XttsConfig()
    try:
        config.load_json(str(path))
    except (ValueError, KeyError, TypeError, AssertionError) as err:
        raise XttsflowError(f"{path} is not a valid XTTS config ({err}) — restore the original config.json") from err
    return config


def load_state(path: str | Path, what: str = "checkpoint"):
    """torch.load with weights_only=True (never unpickles code), with a clear error for a damaged file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as err:
        raise XttsflowError(
            f"{path} cannot be read as a {what} ({type(err).__name__}: {str(err)[:200]}) — the file is "
            f"corrupt or truncated; {paths.remake(path)}"
        ) from err


def load_xtts(checkpoint_dir: str | Path, device: str = "cpu"):
    """Load an XTTS checkpoint folder with coqui's own Xtts.init_from_config + load_checkpoint (eval mode)."""
    from TTS.tts.models.xtts import Xtts

    folder = check_layout(checkpoint_dir, INFERENCE_FILES)
    config = read_config(folder)
    fix_generation_cache()
    with skip_weight_init():  # every weight is loaded (strictly) right after
        model = Xtts(config)  # what the deprecated Xtts.init_from_config does
    try:
        model.load_checkpoint(config, checkpoint_dir=str(folder), eval=True, use_deepspeed=False)
    except _LOAD_ERRORS as err:
        raise XttsflowError(
            f"XTTS checkpoint {folder / 'model.pth'} cannot be loaded ({type(err).__name__}: {str(err)[:300]}) "
            f"— the file is corrupt, truncated or belongs to another model/config.json; {paths.remake(folder)}"
        ) from err
    model.to(device)
    model.eval()
    return model


_INITS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
          "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def skip_weight_init():
    """Build modules without random initialisation, for weights that a strict load_state_dict overwrites.

    The real XTTS has ~500 M parameters; drawing random values for all of them only to replace them
    costs seconds on every load.
    """
    import torch.nn.init as init

    saved = {name: getattr(init, name) for name in _INITS}
    for name in _INITS:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def fix_generation_cache() -> None:
    """Let coqui-tts 0.28's GPT2InferenceModel see the KV cache that transformers >= 5.2x passes as `cache`.

    transformers renamed `past_key_values` to `cache`; coqui's forward still reads `past_key_values`, gets
    None and fails on the first generated token. Mapping the new name onto the old one fixes generation.
    """
    from TTS.tts.layers.xtts import gpt_inference

    model = gpt_inference.GPT2InferenceModel
    if getattr(model.forward, "_xttsflow_cache_fix", False):
        return
    original = model.forward

    def forward(self, input_ids=None, past_key_values=None, cache=None, **kwargs):
        return original(self, input_ids=input_ids, past_key_values=cache if cache is not None else past_key_values,
                        **kwargs)

    forward._xttsflow_cache_fix = True
    model.forward = forward


# ---------- the tiny random checkpoint ----------


def _alphabet() -> list[str]:
    """Characters XTTS's text cleaners can leave for the supported languages (lower-case scripts)."""
    blocks = [(0x21, 0x7E), (0xA1, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF), (0x900, 0x97F),
              (0x2010, 0x2027)]
    chars = [chr(c) for lo, hi in blocks for c in range(lo, hi + 1)]
    return [c for c in chars if c.isprintable() and not c.isspace()]


def build_tokenizer(path: Path, merges: int = 256, size: int | None = None) -> None:
    """A BPE tokenizer in XTTS's vocab.json format, trained locally on the demo sentences.

    `size` pads the vocabulary to that many ids with filler special tokens that no text contains, so the
    GPT's text embedding and text head get the shape of a real vocabulary (XTTS-v2: 6681 ids) although
    the demo sentences teach far fewer merges.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.configs.xtts_config import XttsConfig

    from .demo import DEMO_SENTENCES

    alphabet = _alphabet()
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=len(_SPECIAL) + len(alphabet) + merges,
        special_tokens=_SPECIAL,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator([s.lower() for s in DEMO_SENTENCES], trainer=trainer)
    languages = XttsConfig().languages
    tokenizer.add_special_tokens(["[START]"] + [f"[{lang}]" for lang in languages])
    missing = (size or 0) - tokenizer.get_vocab_size()
    if missing > 0:
        tokenizer.add_special_tokens([f"<xttsflow-unused-{i}>" for i in range(missing)])
    tokenizer.save(str(path))


def _random_config(vocab: Path, gpt: dict):
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    tokenizer = VoiceBpeTokenizer(vocab)
    config = XttsConfig()
    config.audio.sample_rate = TRAIN_SAMPLE_RATE
    config.audio.dvae_sample_rate = TRAIN_SAMPLE_RATE
    config.audio.output_sample_rate = OUTPUT_SAMPLE_RATE
    args = config.model_args
    for key, value in gpt.items():
        setattr(args, key, value)
    args.decoder_input_dim = gpt["gpt_n_model_channels"]  # HiFi-GAN reads the GPT's latents
    args.gpt_number_text_tokens = tokenizer.get_number_tokens()
    args.gpt_start_text_token = tokenizer.tokenizer.token_to_id("[START]")
    args.gpt_stop_text_token = tokenizer.tokenizer.token_to_id("[STOP]")
    args.gpt_num_audio_tokens = AUDIO_CODES + 2
    args.gpt_start_audio_token = AUDIO_CODES
    args.gpt_stop_audio_token = AUDIO_CODES + 1
    args.gpt_use_perceiver_resampler = True  # as XTTS-v2
    args.gpt_use_masking_gt_prompt_approach = True
    return config


def build_dvae():
    """XTTS-v2's discrete VAE with the sizes coqui's GPTTrainer hard-codes."""
    from TTS.tts.layers.xtts.dvae import DiscreteVAE

    return DiscreteVAE(
        channels=80, normalization=None, positional_dims=1, num_tokens=AUDIO_CODES, codebook_dim=512,
        hidden_dim=512, num_resnet_blocks=3, kernel_size=3, num_layers=2, use_transposed_convs=False,
    )


def _voice_like(seconds: float = 4.0, seed: int = 0) -> torch.Tensor:
    """A deterministic harmonic signal with a wandering pitch, to compute the tiny model's speaker latents."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * TRAIN_SAMPLE_RATE)) / TRAIN_SAMPLE_RATE
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / TRAIN_SAMPLE_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 12)) + 0.05 * rng.standard_normal(t.size)
    return torch.from_numpy((0.3 * wave / np.abs(wave).max()).astype(np.float32)).unsqueeze(0)


def build_tiny_checkpoint(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random tiny XTTS (2-layer, 64-channel GPT) folder in XTTS's exact layout; return it."""
    return build_random_checkpoint(out_dir, seed, **TINY_GPT)


def build_xtts_v2_size_checkpoint(out_dir: str | Path, seed: int = 0) -> Path:
    """A random XTTS with XTTS-v2's dimensions: its GPT (XTTS_V2_GPT), text vocabulary size and audio-code limits.

    The audio limits (1026 audio tokens, 605 codes, 402 text tokens, 70 prompt codes) are XttsConfig's
    defaults, which are XTTS-v2's; model.pth is about 1.8 GB, like the real one.
    """
    return build_random_checkpoint(out_dir, seed, text_tokens=XTTS_V2_TEXT_TOKENS, **XTTS_V2_GPT)


def build_random_checkpoint(out_dir: str | Path, seed: int = 0, gpt_layers: int = 2, gpt_n_model_channels: int = 64,
                            gpt_n_heads: int = 4, text_tokens: int | None = None) -> Path:
    """A randomly initialised XTTS of the given GPT size (XTTS-v2: 30 layers, 1024 channels, 16 heads).

    `text_tokens` pads the tokenizer to that vocabulary size (see build_tokenizer); unset, it has the ids
    the demo sentences give (about 1,700).
    """
    from TTS.tts.models.xtts import Xtts

    gpt = {"gpt_layers": gpt_layers, "gpt_n_model_channels": gpt_n_model_channels, "gpt_n_heads": gpt_n_heads}
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    with atomic_dir(out_dir) as tmp:
        build_tokenizer(tmp / "vocab.json", size=text_tokens)
        config = _random_config(tmp / "vocab.json", gpt)
        fix_generation_cache()
        model = Xtts(config)
        dvae = build_dvae()
        # Ones: no mel normalisation. The real file holds per-channel statistics of a large corpus.
        model.mel_stats.fill_(1.0)
        state = {k: v for k, v in model.state_dict().items() if not k.startswith(("gpt.gpt_inference", "gpt.gpt.wte"))}
        save_state(tmp / "model.pth", {"model": state, "config": config.to_dict()})
        save_state(tmp / "dvae.pth", dvae.state_dict())
        save_state(tmp / "mel_stats.pth", torch.ones(80))
        model.eval()
        voice = _voice_like(seed=seed)
        latents = model.get_gpt_cond_latents(voice, TRAIN_SAMPLE_RATE, length=30, chunk_length=6)
        embedding = model.get_speaker_embedding(voice, TRAIN_SAMPLE_RATE)
        save_state(tmp / "speakers_xtts.pth", {"tiny": {"gpt_cond_latent": latents, "speaker_embedding": embedding}})
        write_json(tmp / "config.json", config.to_dict())
        write_json(tmp / "xttsflow.json", {"builder": "xttsflow.xtts_model.build_random_checkpoint", "seed": seed,
                                           "text_tokens": config.model_args.gpt_number_text_tokens, **gpt})
    log.info("built a random XTTS checkpoint (%s) in %s", gpt, out_dir)
    return out_dir


#: Files of the base model that an export carries over unchanged.
CARRIED = tuple(name for name in XTTS_FILES if name != "model.pth")


def save_adapter(peft_model, out_dir: Path) -> Path:
    """peft's save_pretrained (adapter_config.json + adapter_model.safetensors), swapped in atomically."""
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(str(tmp))
    return out_dir


def xtts_state(model) -> dict:
    """The Xtts module's weights as XTTS-v2's model.pth holds them (no inference-only aliases)."""
    return {
        k: v.detach().cpu().clone()
        for k, v in model.xtts.state_dict().items()
        if not k.startswith(("gpt.gpt_inference", "gpt.gpt.wte"))
    }


def export_model(model, peft_model, base_dir: Path, out_dir: Path, info: dict, finish=None) -> Path:
    """Merge the adapters (when there are any) and write a complete XTTS folder at `out_dir`, atomically.

    The folder holds model.pth with the adapters merged into the GPT weights, the base model's other
    files (CARRIED) and xttsflow.json (`info`), so coqui-tts and the XTTS tools load it like the original.
    `finish(folder, info) -> info` adds to the folder before it is moved into place (the named voices).
    """
    if peft_model is not None:
        peft_model.merge_and_unload()  # folds B @ A * alpha / r into each Conv1D weight, removes the adapters
    base_config = read_json(Path(base_dir) / "config.json")
    with atomic_dir(out_dir) as tmp:
        save_state(tmp / "model.pth", {"model": xtts_state(model), "config": base_config})
        for name in CARRIED:
            link_or_copy(Path(base_dir) / name, tmp / name)
        if finish is not None:
            info = finish(tmp, info)
        write_json(tmp / "xttsflow.json", info)
    log.info("exported the fine-tuned model to %s", out_dir)
    return out_dir


def save_state(path: str | Path, obj) -> None:
    """torch.save atomically; through a file object so the archive's inner name never holds the temp name."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
