"""The trainable model: coqui-tts's own GPTTrainer (XTTS GPT + DVAE + mel front ends) built from a checkpoint
folder, optionally with peft LoRA adapters on the GPT-2 blocks.

Loss, batch preparation (DVAE codes of the target audio, conditioning mels of a reference slice) and the
model code are coqui's; xttsflow only drives them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import TRAIN_SAMPLE_RATE, XTTS_MAX_WAV_SAMPLES
from .errors import XttsflowError
from .xtts_model import XTTS_FILES, check_layout, fix_generation_cache, load_state, read_config, skip_weight_init

log = logging.getLogger(__name__)

#: XTTS's recipe: text over 200 tokens is dropped; conditioning slices of 3-6 s of the speaker's audio.
MAX_TEXT_TOKENS = 200
MIN_CONDITIONING_SAMPLES = 3 * TRAIN_SAMPLE_RATE
MAX_CONDITIONING_SAMPLES = 6 * TRAIN_SAMPLE_RATE


def coqui_gpt_trainer():
    """coqui's gpt_trainer module, minus an import side effect: its dataset module sets torch to one thread."""
    threads = torch.get_num_threads()
    from TTS.tts.layers.xtts.trainer import gpt_trainer

    torch.set_num_threads(threads)
    return gpt_trainer


def trainer_config(base_dir: Path, batch_size: int = 1):
    """coqui's GPTTrainerConfig for fine-tuning the model in `base_dir` (its sizes, tokenizer, DVAE, mel stats)."""
    coqui = coqui_gpt_trainer()
    GPTArgs, GPTTrainerConfig = coqui.GPTArgs, coqui.GPTTrainerConfig  # noqa: N806 (coqui's class names)

    base = read_config(base_dir)
    args = GPTArgs(**base.model_args.to_dict())
    args.tokenizer_file = str(base_dir / "vocab.json")
    args.mel_norm_file = str(base_dir / "mel_stats.pth")
    args.dvae_checkpoint = str(base_dir / "dvae.pth")
    args.xtts_checkpoint = ""  # loaded strictly by load_base_weights, not coqui's strict=False path
    args.max_wav_length = XTTS_MAX_WAV_SAMPLES
    args.max_text_length = MAX_TEXT_TOKENS
    args.min_conditioning_length = MIN_CONDITIONING_SAMPLES
    args.max_conditioning_length = MAX_CONDITIONING_SAMPLES
    config = GPTTrainerConfig(model_args=args, audio=base.audio, languages=base.languages, batch_size=batch_size)
    config.optimizer = "AdamW"
    config.optimizer_params = {"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2}
    return config


def build_gpt_trainer(base_dir: str | Path, batch_size: int = 1):
    """coqui's GPTTrainer with the base model's weights loaded strictly (train mode for the GPT only)."""
    base_dir = check_layout(base_dir, tuple(XTTS_FILES))
    load_state(base_dir / "mel_stats.pth", "mel statistics file")
    dvae_state = load_state(base_dir / "dvae.pth", "DVAE checkpoint")
    fix_generation_cache()
    config = trainer_config(base_dir, batch_size)
    with skip_weight_init():  # the DVAE and Xtts weights are loaded strictly below
        model = coqui_gpt_trainer().GPTTrainer(config)
    _strict_load(model.dvae, dvae_state, base_dir / "dvae.pth")
    load_base_weights(model, base_dir / "model.pth")
    model.eval()
    model.xtts.gpt.train()  # as coqui's on_train_epoch_start: only the GPT trains
    return model


def load_base_weights(model, model_path: Path) -> None:
    """Load model.pth through coqui's checkpoint reader, then strictly into the Xtts module."""
    try:
        state = model.xtts.get_compatible_checkpoint_state_dict(model_path)
    except (RuntimeError, ValueError, KeyError, EOFError, OSError) as err:
        raise XttsflowError(
            f"{model_path} cannot be read as an XTTS checkpoint ({type(err).__name__}: {str(err)[:200]}) — the file "
            "is corrupt or truncated; re-create or re-download the base model"
        ) from err
    except Exception as err:  # pickle.UnpicklingError and friends from a file that is not a checkpoint at all
        raise XttsflowError(f"{model_path} is not an XTTS checkpoint ({type(err).__name__}: {err})") from err
    state = {k: v for k, v in state.items() if not k.startswith(("gpt.gpt_inference", "gpt.gpt.wte"))}
    _strict_load(model.xtts, state, model_path)


def _strict_load(module: torch.nn.Module, state: dict, path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise XttsflowError(
            f"{path} does not fit the model that {path.parent / 'config.json'} describes ({str(err)[:300]}) — the "
            "folder mixes files of different models; use a complete, matching XTTS folder"
        ) from err


def lora_config(rank: int, alpha: float, dropout: float, targets: list[str]):
    """peft LoRA on the chosen Conv1D layers of every GPT-2 block (transformers Conv1D: fan_in_fan_out)."""
    from peft import LoraConfig

    pattern = r"gpt\.h\.\d+\.(" + "|".join(t.replace(".", r"\.") for t in targets) + ")"
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, fan_in_fan_out=True)


def apply_lora(model, rank: int, alpha: float, dropout: float, targets: list[str]):
    """Inject LoRA adapters into model.xtts.gpt in place; return the PeftModel wrapper (for save and merge)."""
    from peft import get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    return get_peft_model(model.xtts.gpt, lora_config(rank, alpha, dropout, targets))


def set_full_finetune(model) -> None:
    """Train every parameter of the GPT (what coqui's recipe optimises), nothing else."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.xtts.gpt.parameters():
        p.requires_grad_(True)


def enable_gradient_checkpointing(model) -> None:
    """Recompute each GPT-2 block's activations in the backward pass instead of storing them.

    transformers' own switch on XTTS's GPT2Model, non-reentrant: it works when the block inputs need no
    gradient (LoRA) and replays the blocks' dropout with the same random numbers, so the gradients equal
    the plain path's. Blocks only checkpoint in train mode; inference is untouched.
    """
    from functools import partial

    from torch.utils.checkpoint import checkpoint

    # (gradient_checkpointing_enable itself would also hook the input embeddings, which XTTS removed from
    # its GPT2Model: it feeds inputs_embeds)
    model.xtts.gpt.gpt._set_gradient_checkpointing(
        enable=True, gradient_checkpointing_func=partial(checkpoint, use_reentrant=False)
    )


def set_gpt_dropout(model, probability: float) -> int:
    """Set every dropout of the GPT-2 blocks (embeddings, attention, residuals) to `probability`; how many.

    LoRA's own dropout is lora_dropout; the conditioning encoder and perceiver have none that trains."""
    found = 0
    for module in model.xtts.gpt.gpt.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = probability
            found += 1
    return found


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (what a training checkpoint stores)."""
    return {name: p.detach() for name, p in model.xtts.gpt.named_parameters() if p.requires_grad}


def parameter_counts(model) -> dict[str, int]:
    """Trainable parameters, and the sizes of the GPT and of the whole model without the adapters."""
    named = dict(model.xtts.named_parameters())
    base = {name: p for name, p in named.items() if ".lora_" not in name}
    return {
        "trainable": sum(p.numel() for p in named.values() if p.requires_grad),
        "gpt_total": sum(p.numel() for name, p in base.items() if name.startswith("gpt.")),
        "model_total": sum(p.numel() for p in base.values()),
    }
