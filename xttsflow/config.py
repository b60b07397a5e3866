"""The workflow config as a whole: every section checked by its model, defaults filled in, short errors.

The Snakefile calls validate_config(config) before any job is planned. A problem stops the run with a
few lines, each naming the key, what is allowed and, for a typo, the closest valid key.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from .errors import XttsflowError
from .options import (
    DatasetConfig,
    EvaluateConfig,
    IngestConfig,
    SegmentConfig,
    SpeakerCheckConfig,
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
    "speaker_check": SpeakerCheckConfig,
    "dataset": DatasetConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
}
#: Every section, in the order the schema documents them. One without a model yet (transcribe, until
#: its TranscribeConfig joins SECTION_MODELS) is checked against config/schema.yaml, defaults and all.
SECTIONS = ("ingest", "segment", "transcribe", "speaker_check", "dataset", "train", "evaluate")


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
        elif name in SECTION_MODELS:
            try:
                SECTION_MODELS[name].model_validate(values, strict=True)
            except ValidationError as err:
                found += problems(err, SECTION_MODELS[name], f"{name}.")
        else:
            found += _schema_problems(name, values)
    if found:
        raise XttsflowError(summary(found))
    # The rules read the config dict: the user's values as written (so that a rule's params, and with
    # them what re-runs, stay as they were), then every default.
    _fill(config, TopLevel)
    for name in SECTIONS:
        section = config.setdefault(name, {})
        if name in SECTION_MODELS:
            _fill(section, SECTION_MODELS[name])
        else:
            _fill_from_schema(section, _schema()["properties"][name])
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


# ---------- sections without a model: config/schema.yaml ----------


@cache
def _schema() -> dict:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "schema.yaml").read_text())


def _schema_problems(name: str, values: dict) -> list[str]:
    from jsonschema import Draft202012Validator

    found = []
    for error in Draft202012Validator(_schema()["properties"][name]).iter_errors(values):
        path = ".".join([name, *map(str, error.absolute_path)])
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = list(error.schema.get("properties", {}))
            found += [unknown_key(f"{path}.{key}", known) for key in error.instance if key not in known]
        else:
            found.append(f"{path}: {error.message}")
    return found


def _fill_from_schema(values: dict, schema: dict) -> None:
    for key, spec in schema.get("properties", {}).items():
        if "default" in spec:
            values.setdefault(key, copy.deepcopy(spec["default"]))
        if isinstance(values.get(key), dict) and "properties" in spec:
            _fill_from_schema(values[key], spec)
