"""Config `transcribe:` as one typed object (config/schema.yaml documents each option), built once per job."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ..hallucination import ScreenConfig
from ..options import Options, SourceLanguage
from . import BACKENDS

ComputeType = Literal["auto", "default", "int8", "int8_float16", "int8_bfloat16", "int8_float32", "float16",
                      "bfloat16", "float32"]


class TranscribeConfig(Options):
    """The `transcribe:` section: which recogniser, how it decodes, and the hallucination screen."""

    section: ClassVar[str] = "transcribe"

    backend: Literal[tuple(BACKENDS)] = "faster-whisper"  # the registry's names (xttsflow/asr/__init__.py)
    model: str = "medium"
    language: SourceLanguage | None = None  # a code, or auto: every source's language detected
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: ComputeType = "auto"
    beam_size: int = Field(5, ge=1)
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    condition_on_previous_text: bool = False
    word_timestamps: bool = True
    detect_language: bool = True
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    screen: ScreenConfig = Field(default_factory=ScreenConfig)

    def fingerprint(self, language: str | None) -> dict:
        """What a transcript depends on: every option but `workers` (speed only) and the screen, and the language."""
        return self.model_dump(mode="json", exclude={"workers", "screen"}) | {"language": language}
