"""The train: section (TrainConfig) and TrainingSettings, which layers it with arguments, TRAIN_* env vars and .env.

Highest wins: programmatic arguments > TRAIN_* environment variables > the .env file > the workflow
config's `train:` section > the defaults below. Sample rates: XTTS reads training audio at 22050 Hz (its
DVAE and conditioning mels) and its HiFi-GAN decoder writes 24000 Hz; both are fixed by the model, so
both are fields that only accept those values. Where a run reads its dataset and writes its checkpoints
and logs is no setting: the workflow fixes those folders and the train package takes them as arguments.
"""

from __future__ import annotations

import contextvars
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from . import OUTPUT_SAMPLE_RATE, TRAIN_SAMPLE_RATE
from .errors import XttsflowError
from .options import NAME_PATTERN, Device, Options

XTTS_V2 = "tts_models/multilingual/multi-dataset/xtts_v2"
BUILTIN_TINY = "builtin:tiny"
#: Random weights with XTTS-v2's own dimensions: real-size runs (memory, speed) without a download.
BUILTIN_XTTS_V2_SIZE = "builtin:xtts-v2-size"
BUILTINS = (BUILTIN_TINY, BUILTIN_XTTS_V2_SIZE)
#: The transformers Conv1D layers of each GPT-2 block of XTTS's GPT that LoRA may adapt.
LoraTarget = Literal["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
LORA_TARGETS = get_args(LoraTarget)

_WORKFLOW_SECTION: contextvars.ContextVar[dict | None] = contextvars.ContextVar("train_section", default=None)


def base_model_kind(spec: str) -> str:
    """What a base_model value names: builtin (BUILTINS), name (a coqui-tts model name) or folder."""
    if spec.startswith("builtin:"):
        return "builtin"
    if spec.startswith("tts_models/") and not Path(spec).exists():
        return "name"
    return "folder"


class TrainConfig(Options):
    """The train: section of the config: every setting of one fine-tuning run (config/schema.yaml documents each)."""

    section: ClassVar[str] = "train"

    # --- base model
    model_name: str = XTTS_V2
    base_model: str | None = None
    accept_cpml: bool = False
    run_name: str = Field("main", pattern=NAME_PATTERN)
    language: str | None = None
    # --- device
    device: Device = "auto"
    cuda_device_id: int = Field(0, ge=0)
    gpus: int = Field(1, ge=1)
    use_amp: bool = True
    amp_dtype: Literal["auto", "bf16", "fp16"] = "auto"
    # --- LoRA
    use_lora: bool = True
    lora_rank: int = Field(8, ge=1, le=1024)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[LoraTarget] = Field(default_factory=lambda: list(LORA_TARGETS), min_length=1)
    # --- data
    sample_rate: Literal[TRAIN_SAMPLE_RATE] = TRAIN_SAMPLE_RATE
    output_sample_rate: Literal[OUTPUT_SAMPLE_RATE] = OUTPUT_SAMPLE_RATE
    batch_size: int = Field(4, ge=1)
    num_workers: int = Field(2, ge=0)
    batch_group_size: int = Field(0, ge=0)
    # --- memory
    gradient_checkpointing: bool = False
    gpu_memory_gb: Annotated[float, Field(gt=0)] | Literal["auto"] | None = None
    # --- optimisation
    num_epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-4, gt=0, le=1)
    weight_decay: float = Field(1e-2, ge=0)
    lr_scheduler: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    grad_accum_steps: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    gpt_dropout: float | None = Field(None, ge=0, lt=1)
    seed: int = Field(1234, ge=0)
    fused_optimizer: bool = True
    # --- checkpoints and logs
    use_tensorboard: bool = True
    log_every_n_steps: int = Field(10, ge=1)
    save_every_n_steps: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool = True
    export_checkpoint: Literal["best", "last"] = "best"
    eval_sentences: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["This voice was fine-tuned from a few minutes of recordings."]
    )
    eval_audio: bool = True
    eval_audio_seconds: float = Field(8.0, gt=0, le=60)

    # Sample rates and LoRA targets are checked before their types, so that a wrong value gets the reason.
    @field_validator("sample_rate", mode="before")
    @classmethod
    def _training_rate(cls, value: Any) -> int:
        if str(value) != str(TRAIN_SAMPLE_RATE):  # (environment values arrive as text)
            raise ValueError(
                f"XTTS reads training audio at {TRAIN_SAMPLE_RATE} Hz (its DVAE and conditioning mels are built "
                f"for it), so sample_rate must be {TRAIN_SAMPLE_RATE}; {OUTPUT_SAMPLE_RATE} Hz is the rate it "
                "writes (output_sample_rate)"
            )
        return TRAIN_SAMPLE_RATE

    @field_validator("output_sample_rate", mode="before")
    @classmethod
    def _output_rate(cls, value: Any) -> int:
        if str(value) != str(OUTPUT_SAMPLE_RATE):
            raise ValueError(
                f"XTTS's HiFi-GAN decoder writes {OUTPUT_SAMPLE_RATE} Hz, so output_sample_rate must be "
                f"{OUTPUT_SAMPLE_RATE}; resample the synthesized audio afterwards if you need another rate"
            )
        return OUTPUT_SAMPLE_RATE

    @field_validator("lora_target_modules", mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # the type check says what is wrong
        if not value:
            raise ValueError(f"name at least one LoRA target module out of {', '.join(LORA_TARGETS)}")
        unknown = [name for name in value if name not in LORA_TARGETS]
        if unknown:
            raise ValueError(
                f"unknown LoRA target module(s) {', '.join(map(str, unknown))}; XTTS's GPT blocks have "
                f"{', '.join(LORA_TARGETS)}"
            )
        return list(dict.fromkeys(value))

    @field_validator("eval_sentences")
    @classmethod
    def _sentences(cls, value: list[str]) -> list[str]:
        if any(not s.strip() for s in value):
            raise ValueError("evaluation sentences must not be empty strings")
        return value

    @field_validator("base_model")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("give builtin:tiny, a coqui-tts model name or a folder, or leave it unset")
        if value is not None and value.startswith("builtin:") and value not in BUILTINS:
            raise ValueError(f"the builtin models are {' and '.join(BUILTINS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.max_steps is not None and self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be smaller than max_steps ({self.max_steps})")
        if self.gpus > 1 and self.cuda_device_id:
            raise ValueError(f"cuda_device_id picks the one GPU of a single-GPU run; with gpus: {self.gpus} the "
                             f"processes take GPUs 0..{self.gpus - 1} (choose which with CUDA_VISIBLE_DEVICES)")
        return self


class _WorkflowConfigSource(PydanticBaseSettingsSource):
    """The workflow config's `train:` section: the layer just above the defaults."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        section = _WORKFLOW_SECTION.get() or {}
        return section.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_WORKFLOW_SECTION.get() or {})


class TrainingSettings(TrainConfig, BaseSettings):
    """The train: section with its layers (see the module docstring): what one fine-tuning run uses."""

    model_config = SettingsConfigDict(
        env_prefix="TRAIN_", env_file=".env", env_file_encoding="utf-8", extra="forbid", validate_default=True
    )

    def __init__(self, _workflow_config: dict | None = None, **values: Any) -> None:
        token = _WORKFLOW_SECTION.set(dict(_workflow_config or {}))
        try:
            super().__init__(**values)
        finally:
            _WORKFLOW_SECTION.reset(token)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, **_):
        return init_settings, env_settings, dotenv_settings, _WorkflowConfigSource(settings_cls)

    # --- derived values
    @property
    def base_model_spec(self) -> str:
        """What the base model is: builtin:tiny, a coqui-tts model name, or a folder."""
        return self.base_model or self.model_name

    @property
    def run_dir(self) -> Path:
        """Where the workflow keeps this run's checkpoints, adapter and export."""
        return Path("checkpoints") / self.run_name

    @property
    def tensorboard_dir(self) -> Path:
        """Where the workflow keeps this run's TensorBoard logs."""
        return Path("runs") / self.run_name

    def snapshot(self) -> dict:
        """The settings as plain JSON data."""
        return json.loads(self.model_dump_json())

    def fingerprint(self) -> dict:
        """The settings that decide the trained weights: a checkpoint resumes only under the same ones.

        Run length (max_steps, num_epochs), logging and loader workers are left out, so raising
        max_steps continues a finished run instead of starting over.
        """
        ignore = {
            "max_steps", "num_epochs", "num_workers", "use_tensorboard", "log_every_n_steps", "save_every_n_steps",
            "keep_checkpoints", "resume", "export_checkpoint", "eval_sentences", "eval_audio", "eval_audio_seconds",
            "device", "cuda_device_id", "accept_cpml",
            "gpus",  # a run continues on another number of processes (Trainer.restore says what changes)
            "gradient_checkpointing",  # recomputes activations; the weights come out the same
            "gpu_memory_gb",  # what it plans (batch_size, grad_accum_steps) goes into the run's fingerprint
            "fused_optimizer",  # the same AdamW update in one kernel (weights within ~1e-7): a run may switch it
        }
        # Settings added since checkpoints were first written, at the value that reproduces the old behaviour,
        # are left out: a run begun before the upgrade still resumes (its checkpoint's fingerprint lacks them).
        unchanged = {"gpt_dropout": None}
        return {k: v for k, v in self.snapshot().items()
                if k not in ignore and not (k in unchanged and v == unchanged[k])}


def _user_message(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "train"
        message = re.sub(r"^(Value|Assertion) error, ", "", item["msg"])
        if item["type"] == "extra_forbidden":
            message = "unknown setting (config/schema.yaml lists the train: settings)"
        lines.append(f"train.{field}: {message} (got {item.get('input')!r})")
    return (
        "invalid training settings — fix them in the config's train: section, the TRAIN_<NAME> environment "
        "variable or .env:\n  " + "\n  ".join(lines)
    )


def load_settings(config_section: dict | None = None, env_file: str | Path | None = ".env", **overrides: Any):
    """Build TrainingSettings from all layers; bad values raise XttsflowError naming each field."""
    try:
        return TrainingSettings(_workflow_config=config_section, _env_file=env_file, **overrides)
    except ValidationError as err:
        raise XttsflowError(_user_message(err)) from None
