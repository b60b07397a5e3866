"""The workflow config as a whole: every section checked by its model, defaults filled in, short errors.

The Snakefile calls validate_config(config) before any job is planned. A problem stops the run with a
few lines, each naming the key, what is allowed and, for a typo, the closest valid key.
"""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from .asr.config import TranscribeConfig
from .errors import XttsflowError
from .options import (
    DatasetConfig,
    EvaluateConfig,
    IngestConfig,
    SegmentConfig,
    SpeakerEmbedConfig,
    TopLevel,
    model_in,
    problems,
    summary,
    unknown_key,
)
from .settings import TrainConfig

#: Each config section's model: its options' types, defaults and bounds (tests/test_config.py proves
#: that config/schema.yaml documents the same ones).
SECTION_MODELS: dict[str, type[BaseModel]] = {
    "ingest": IngestConfig,
    "segment": SegmentConfig,
    "transcribe": TranscribeConfig,
    "speaker_embed": SpeakerEmbedConfig,
    "dataset": DatasetConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
}
#: Every section, in the order the schema documents them.
SECTIONS = ("ingest", "segment", "transcribe", "speaker_embed", "dataset", "train", "evaluate")


def validate_config(config: dict) -> dict:
    """Check every option of `config` and fill in each default, in place; XttsflowError says what is wrong."""
    allowed = [*TopLevel.model_fields, *SECTIONS]
    found = [unknown_key(key, allowed) for key in config if key not in allowed]
    try:
        TopLevel.model_validate({k: v for k, v in config.items() if k in TopLevel.model_fields}, strict=True)
    except ValidationError as err:
        found += problems(err, TopLevel)
    for name in SECTIONS:
        values = config.get(name, {})
        if not isinstance(values, dict):
            found.append(f"{name} must be a mapping of options (got {values!r})")
        else:
            try:
                SECTION_MODELS[name].model_validate(values, strict=True)
            except ValidationError as err:
                found += problems(err, SECTION_MODELS[name], f"{name}.")
    if not found:  # languages nobody can take through the workflow here stop it now, not mid-training
        from .frontends import check_languages
        from .languages import config_languages

        found += [f"language {code!r}: {why}" for code, why in check_languages(config_languages(config)).items()]
    if found:
        raise XttsflowError(summary(found))
    # The rules read the config dict: the user's values as written (so that a rule's params, and with
    # them what re-runs, stay as they were), then every default.
    _fill(config, TopLevel)
    for name in SECTIONS:
        _fill(config.setdefault(name, {}), SECTION_MODELS[name])
    return config


def defaults(model: type[BaseModel]) -> dict:
    """Every option of `model` that has a default, as plain data. (A None default on an option that
    cannot be null, like a source's url, means the option is absent unless given: no default.)"""
    return {name: to_jsonable_python(field.get_default(call_default_factory=True))
            for name, field in model.model_fields.items()
            if not field.is_required() and (field.default is not None or type(None) in get_args(field.annotation))}


def _fill(values: dict, model: type[BaseModel]) -> None:
    """`model`'s defaults into `values` where the user gave none, nested sections too."""
    for name, value in defaults(model).items():
        values.setdefault(name, value)
    for name, field in model.model_fields.items():
        nested = model_in(field.annotation)
        if nested and isinstance(values.get(name), dict):
            _fill(values[name], nested)
