"""TrainingSettings: layering (args > TRAIN_* env > .env > config train: > defaults), validators, schema."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from xttsflow import OUTPUT_SAMPLE_RATE, TRAIN_SAMPLE_RATE
from xttsflow.errors import XttsflowError
from xttsflow.settings import LORA_TARGETS, TrainingSettings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No TRAIN_* variables or .env of the developer's shell leak into these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("TRAIN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_model_both_sample_rates():
    s = load_settings()
    assert (s.sample_rate, s.output_sample_rate) == (TRAIN_SAMPLE_RATE, OUTPUT_SAMPLE_RATE) == (22050, 24000)
    assert s.use_lora and s.lora_target_modules == list(LORA_TARGETS)
    assert s.base_model_spec == "tts_models/multilingual/multi-dataset/xtts_v2" and not s.accept_cpml
    assert str(s.run_dir) == "checkpoints/main" and str(s.tensorboard_dir) == "runs/main"


def test_each_layer_overrides_the_one_below(monkeypatch, tmp_path):
    config = {"lora_rank": 4, "batch_size": 3, "seed": 7, "num_epochs": 2}
    (tmp_path / ".env").write_text("TRAIN_BATCH_SIZE=5\nTRAIN_SEED=8\nTRAIN_NUM_EPOCHS=9\n")
    monkeypatch.setenv("TRAIN_SEED", "11")
    monkeypatch.setenv("TRAIN_NUM_EPOCHS", "12")
    s = load_settings(config, num_epochs=13)
    assert s.learning_rate == TrainingSettings.model_fields["learning_rate"].default  # default
    assert s.lora_rank == 4  # workflow config over default
    assert s.batch_size == 5  # .env over workflow config
    assert s.seed == 11  # environment over .env
    assert s.num_epochs == 13  # argument over environment


def test_env_vars_parse_lists_and_bools(monkeypatch):
    monkeypatch.setenv("TRAIN_LORA_TARGET_MODULES", '["attn.c_attn", "mlp.c_fc"]')
    monkeypatch.setenv("TRAIN_USE_LORA", "false")
    s = load_settings({"lora_target_modules": ["attn.c_proj"]})
    assert s.lora_target_modules == ["attn.c_attn", "mlp.c_fc"] and s.use_lora is False


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"lora_rank": 0}, "lora_rank", "greater than or equal to 1"),
        ({"lora_alpha": 0}, "lora_alpha", "greater than 0"),
        ({"lora_dropout": 1.0}, "lora_dropout", "less than 1"),
        ({"lora_dropout": -0.1}, "lora_dropout", "greater than or equal to 0"),
        ({"learning_rate": 0}, "learning_rate", "greater than 0"),
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"grad_accum_steps": 0}, "grad_accum_steps", "greater than or equal to 1"),
        ({"max_grad_norm": 0}, "max_grad_norm", "greater than 0"),
        ({"max_steps": 0}, "max_steps", "greater than or equal to 1"),
        ({"num_workers": -1}, "num_workers", "greater than or equal to 0"),
        ({"sample_rate": 24000}, "sample_rate", "XTTS reads training audio at 22050 Hz"),
        ({"output_sample_rate": 22050}, "output_sample_rate", "HiFi-GAN decoder writes 24000 Hz"),
        ({"lora_target_modules": []}, "lora_target_modules", "at least one LoRA target module"),
        ({"lora_target_modules": ["attn.q_proj"]}, "lora_target_modules", "unknown LoRA target module(s) attn.q_proj"),
        ({"eval_sentences": ["  "]}, "eval_sentences", "must not be empty"),
        ({"base_model": "builtin:huge"}, "base_model", "the builtin models are builtin:tiny and builtin:xtts-v2-size"),
        ({"base_model": " "}, "base_model", "give builtin:tiny"),
        ({"device": "tpu"}, "device", "'auto', 'cpu' or 'cuda'"),
        ({"run_name": "../escape"}, "run_name", "should match pattern"),
        ({"warmup_steps": 10, "max_steps": 10}, "train", "warmup_steps (10) must be smaller than max_steps (10)"),
        ({"lora_rnak": 8}, "lora_rnak", "unknown setting"),
    ],
)
def test_validators_name_the_setting(values, field, message):
    with pytest.raises(XttsflowError) as err:
        load_settings(values)
    text = str(err.value)
    assert f"train.{field}" in text if field != "train" else "train" in text
    assert message in text
    assert "TRAIN_<NAME>" in text  # says where settings come from


def test_bad_env_var_is_reported_with_its_setting(monkeypatch):
    monkeypatch.setenv("TRAIN_BATCH_SIZE", "lots")
    with pytest.raises(XttsflowError, match=r"train\.batch_size: Input should be a valid integer.*'lots'"):
        load_settings()


def test_fingerprint_ignores_run_length_but_not_the_model():
    base = load_settings()
    assert load_settings(max_steps=50, num_epochs=3, num_workers=0).fingerprint() == base.fingerprint()
    assert load_settings(lora_rank=4).fingerprint() != base.fingerprint()
    assert load_settings(learning_rate=1e-3).fingerprint() != base.fingerprint()


def test_schema_documents_every_setting_with_the_same_default():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["properties"]["train"]
    assert schema["additionalProperties"] is False
    documented = schema["properties"]
    defaults = load_settings().snapshot()
    assert set(documented) == set(defaults)
    for name, spec in documented.items():
        assert spec.get("default") == defaults[name], name
    assert documented["lora_target_modules"]["items"]["enum"] == list(LORA_TARGETS)
