"""A bad config stops the run before any job starts, in a few lines that name the key; the schema that
documents the options and the models that define them agree on every one."""

import copy
import json

import pytest
import yaml
from conftest import REPO, snakemake, write_config

from xttsflow.config import SECTION_MODELS, defaults, validate_config
from xttsflow.errors import XttsflowError
from xttsflow.options import DatasetConfig, TopLevel, model_in, parse

GOOD_SOURCE = {"path": "rec.wav", "speaker": "ana", "language": "pt"}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"sources": [GOOD_SOURCE], "segmnet": {}}, "segmnet"),
        ({"sources": [GOOD_SOURCE], "segment": {"min_duration": -5}}, "min_duration"),
        ({"sources": [GOOD_SOURCE], "segment": {"min_duration": 12, "max_duration": 8}}, "segment.min_duration"),
        ({"sources": [GOOD_SOURCE], "ingest": {"audio_quality": "320k"}}, "audio_quality"),
        ({"sources": [{"path": "a.wav", "speaker": "../etc"}]}, "speaker"),
        ({"sources": [{"path": "a.wav", "url": "https://x.org/v", "speaker": "ana"}]}, "oneOf"),
        ({"sources": []}, "sources"),
    ],
    ids=["unknown-key", "negative-duration", "min-above-max", "bad-enum", "unsafe-speaker", "url-and-path",
         "no-sources"],
)
def test_bad_config_stops_before_any_job(tmp_path, config, expected):
    (tmp_path / "rec.wav").write_bytes(b"")
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "--cores", "1", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected in output, output
    assert not (tmp_path / "raw").exists() and not (tmp_path / "logs").exists()


def test_dataset_limit_above_xtts_is_refused():
    with pytest.raises(XttsflowError, match="255995 samples"):
        parse(DatasetConfig, {"min_duration": 3, "max_duration": 14})


def test_defaults_are_filled_in(tmp_path):
    (tmp_path / "rec.wav").write_bytes(b"")
    write_config(tmp_path, {"sources": [GOOD_SOURCE], "until": "ingest"})
    proc = snakemake(tmp_path, "--dry-run", "--cores", "1")
    assert "ingest" in proc.stdout + proc.stderr


def test_the_rules_read_every_default_as_the_schema_fills_it():
    """What Snakemake's validate() filled in before: the same values, order and repr, so that no rule's
    params (and so nothing that re-runs) change."""
    from snakemake.utils import validate

    config = {"sources": [GOOD_SOURCE], "segment": {"max_duration": 10, "min_duration": 3},
              "transcribe": {"screen": {"max_ngram_repeats": 5}}, "evaluate": {"seed": 3}}
    ours, schemas = copy.deepcopy(config), copy.deepcopy(config)
    validate_config(ours)
    validate(schemas, str(REPO / "config" / "schema.yaml"))
    assert json.dumps(ours) == json.dumps(schemas)


@pytest.mark.parametrize(
    ("section", "values", "key", "also"),
    [
        (None, {"segmnt": {"max_duration": 10}}, "segmnt", "did you mean segment?"),
        ("segment", {"max_duraton": 10}, "segment.max_duraton", "did you mean max_duration?"),
        ("segment", {"max_duration": "long"}, "segment.max_duration", "must be a number"),
        ("dataset", {"val_fraction": 1.5}, "dataset.val_fraction", "must be less than 1"),
    ],
    ids=["unknown-top-level-key", "unknown-nested-key", "wrong-type", "out-of-range"],
)
def test_a_bad_config_prints_a_few_lines_that_name_the_key(tmp_path, section, values, key, also):
    (tmp_path / "rec.wav").write_bytes(b"")
    write_config(tmp_path, {"sources": [GOOD_SOURCE], **({section: values} if section else values)})
    proc = snakemake(tmp_path, "--dry-run", check=False)
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode != 0
    assert len(output.splitlines()) <= 5, output
    assert key in output and also in output, output


#: Sections that have no model yet, so that config/schema.yaml alone defines them: a known TODO.
#: Keywords that describe or combine rather than constrain (oneOf: SourceEntry's own check, tested above).
IGNORED = {"title", "description", "default", "oneOf", "$schema", "$id"}
BOUNDS = {"number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
          "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
          "string": ("pattern", "minLength", "maxLength"), "array": ("minItems", "maxItems"), "boolean": (),
          "null": (), "object": ()}
NO_DEFAULT = object()


def canonical(spec: dict, root: dict) -> dict:
    """A JSON-schema fragment as {type: its constraints}, however it is written ($ref, anyOf, type lists, const)."""
    while "$ref" in spec or "allOf" in spec:
        ref = spec["$ref"] if "$ref" in spec else spec["allOf"][0]["$ref"]
        target = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        spec = {**target, **{k: v for k, v in spec.items() if k not in ("$ref", "allOf")}}
    if "anyOf" in spec:
        merged = {}
        for member in spec["anyOf"]:
            merged.update(canonical({**{k: v for k, v in spec.items() if k != "anyOf"}, **member}, root))
        return merged
    unknown = set(spec) - IGNORED - {"type", "enum", "const", "items", "properties", "required",
                                     "additionalProperties", "propertyNames", "patternProperties"} - {
        k for keys in BOUNDS.values() for k in keys}
    assert not unknown, f"keywords this test does not compare: {unknown}"
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    result = {}
    for kind in types:
        rules = {k: spec[k] for k in BOUNDS[kind] if k in spec}
        values = spec.get("enum", [spec["const"]] if "const" in spec else None)
        if values is not None and kind != "null":
            rules["enum"] = sorted(v for v in values if v is not None)
        if kind == "array" and "items" in spec:
            rules["items"] = canonical(spec["items"], root)
        if kind == "object":
            rules["properties"] = {k: canonical(v, root) for k, v in spec.get("properties", {}).items()}
            rules["required"] = sorted(spec.get("required", []))
            extra = spec.get("additionalProperties", True)
            rules["additionalProperties"] = canonical(extra, root) if isinstance(extra, dict) else extra
            if "propertyNames" in spec:
                rules["propertyNames"] = spec["propertyNames"]["pattern"]
            for pattern, values_spec in spec.get("patternProperties", {}).items():  # pydantic's way to say the same
                rules["propertyNames"], rules["additionalProperties"] = pattern, canonical(values_spec, root)
        result[kind] = rules
    return result


def test_schema_and_models_agree_on_every_option():
    """Every option of every section: the same name, order, type, enum, bounds and default in both."""
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    documented = schema["properties"]
    assert schema["additionalProperties"] is False
    assert set(documented) == {*TopLevel.model_fields, *SECTION_MODELS}
    agree("", TopLevel, {name: documented[name] for name in TopLevel.model_fields}, schema)
    for name, model in SECTION_MODELS.items():
        section = documented[name]
        assert (section["type"], section["additionalProperties"], section["default"]) == ("object", False, {}), name
        agree(f"{name}.", model, section["properties"], schema)


def documented_default(spec: dict):
    """An option's default as config/schema.yaml fills it in (`{}` for a nested section gets its own defaults)."""
    default = spec.get("default", NO_DEFAULT)
    if isinstance(default, dict) and "properties" in spec:
        nested = {k: documented_default(v) for k, v in spec["properties"].items()}
        default = {**{k: v for k, v in nested.items() if v is not NO_DEFAULT}, **default}
    return default


def agree(prefix: str, model, options: dict, schema: dict) -> None:
    """`options` (as config/schema.yaml documents them) are exactly `model`'s, nested models included."""
    assert list(options) == list(model.model_fields), f"{prefix}: other options, or in another order"
    generated, model_defaults = model.model_json_schema(), defaults(model)
    for option, spec in options.items():
        key = prefix + option
        assert canonical(spec, schema) == canonical(generated["properties"][option], generated), key
        # json.dumps tells 30 from 30.0: the defaults filled in are the schema's, down to their repr
        assert json.dumps(documented_default(spec), default=repr) == json.dumps(
            model_defaults.get(option, NO_DEFAULT), default=repr), key
        nested = model_in(model.model_fields[option].annotation)
        if nested:  # a nested section (transcribe.screen) or a list of entries (sources)
            agree(f"{key}.", nested, spec.get("properties") or spec["items"]["properties"], schema)


def test_a_language_the_workflow_cannot_take_stops_at_config_time(monkeypatch):
    from xttsflow import frontends, languages

    for where in ({"sources": [{**GOOD_SOURCE, "language": "sv"}]},
                  {"sources": [GOOD_SOURCE], "default_language": "sv"},
                  {"sources": [GOOD_SOURCE], "evaluate": {"language": "sv"}}):
        with pytest.raises(XttsflowError, match="language 'sv': XTTS-v2 does not speak 'sv'"):
            validate_config(copy.deepcopy(where))
    auto = validate_config({"sources": [{**GOOD_SOURCE, "language": "auto"}, {"path": "b.wav", "speaker": "ana"}],
                            "default_language": "auto"})
    assert auto["sources"][0]["language"] == "auto" and auto["default_language"] == "auto"
    every = [{"path": f"{code}.wav", "speaker": "ana", "language": code} for code in languages.XTTS_LANGUAGES]
    validate_config({"sources": every})  # all 17 pass: their text front ends are installed
    # A front end whose package is absent is named with what to install (a module name nothing provides).
    monkeypatch.setitem(frontends.FRONT_END_MODULES, "ja", {"cutlet_not_installed_here": "cutlet"})
    with pytest.raises(XttsflowError, match="language 'ja': XTTS's ja text front end needs cutlet"):
        validate_config({"sources": [{**GOOD_SOURCE, "language": "ja"}]})


def test_the_portuguese_demo_config_is_valid_and_portuguese():
    config = validate_config(yaml.safe_load((REPO / "config" / "demo-pt.yaml").read_text()))
    assert [s["language"] for s in config["sources"]] == ["pt"] and config["evaluate"]["language"] == "pt"
    assert config["transcribe"]["model"] == "bundled:base"
    assert sorted(p.name for p in (REPO / "demo" / "recordings-pt").iterdir()) == [
        "farol part 1.mp3", "farol part 2.ogg", "farol part 3.m4a"]
