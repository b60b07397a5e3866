"""The memory planner: batch size x accumulation (and checkpointing) fit to a GPU's memory from the measured model;
a card too small says what it needs; the train loop runs what it planned."""

from __future__ import annotations

import pytest
from train_fixtures import folders, settings, tiny_base, tiny_dataset

from xttsflow import memory_plan
from xttsflow.errors import XttsflowError
from xttsflow.memory_plan import GIB, plan
from xttsflow.train import Trainer

# XTTS-v2 as training holds it: GPTTrainer's fp32 weights and buffers (GPT, HiFi-GAN, DVAE, front ends)
WEIGHTS = int(2.1 * GIB)
LORA, FULL = 5_000_000, 441_000_000


def test_plans_keep_the_effective_batch_and_fit_the_card():
    for gb in (8, 12, 16, 24, 48, 80):
        for trainable in (LORA, FULL):
            try:
                p = plan(gb, WEIGHTS, trainable, 11.6, 32)
            except XttsflowError:
                assert gb <= 12 and trainable == FULL  # full fine-tuning needs the bigger cards
                continue
            assert p.batch_size * p.grad_accum_steps >= 32
            assert (p.batch_size - 1) * p.grad_accum_steps < 32  # no needless accumulation
            assert p.need_bytes <= p.budget_bytes < gb * 1e9
    small, large = plan(8, WEIGHTS, LORA, 11.6, 32, checkpointing=False), plan(80, WEIGHTS, LORA, 11.6, 32)
    assert small.batch_size < large.batch_size and small.grad_accum_steps > large.grad_accum_steps
    assert large.grad_accum_steps <= 2 and not large.gradient_checkpointing  # (equal micro-batches: 16 x 2)


def test_checkpointing_is_chosen_where_it_fits_more_clips_and_kept_when_asked():
    tight = plan(8, WEIGHTS, LORA, 11.6, 32)
    assert tight.gradient_checkpointing  # plain fits fewer than PREFERRED_MICRO_BATCH clips of 11.6 s on 8 GB
    assert plan(80, WEIGHTS, LORA, 11.6, 32, checkpointing=True).gradient_checkpointing
    forced = plan(80, WEIGHTS, LORA, 11.6, 32, checkpointing=False)
    assert not forced.gradient_checkpointing and forced.batch_size * forced.grad_accum_steps == 32
    shorter = plan(12, WEIGHTS, LORA, 5.0, 32, checkpointing=False)
    longer = plan(12, WEIGHTS, LORA, 11.6, 32, checkpointing=False)
    assert shorter.batch_size > longer.batch_size  # shorter clips, bigger batches
    assert not shorter.gradient_checkpointing and plan(12, WEIGHTS, LORA, 5.0, 32) == shorter  # enough without it


def test_a_card_too_small_says_what_it_needs():
    with pytest.raises(XttsflowError) as err:
        plan(2, WEIGHTS, LORA, 11.6, 4)
    text = str(err.value)
    assert "a GPU of 2 GB cannot train this model" in text and "needs about" in text
    need = float(text.split("needs about ")[1].split(" GB")[0])
    assert need > 2 and plan(need + 0.1, WEIGHTS, LORA, 11.6, 1).batch_size == 1  # the number it says is enough


def test_the_measured_model_is_filled_in():
    for checkpointing in (False, True):
        assert all(c >= 0 for c in memory_plan.MEASURED[checkpointing]) and memory_plan.MEASURED[checkpointing][1] > 0
    assert memory_plan.activation_bytes(11.0, True) <= 0.4 * memory_plan.activation_bytes(11.0, False)


@pytest.mark.slow
def test_the_train_loop_runs_what_it_planned(tmp_path):
    # the tiny GPT's activations scale down by layers x channels; 4 clips per step on a 3 GB "card"
    s = settings(max_steps=2, batch_size=1, grad_accum_steps=4, gpu_memory_gb=3)
    trainer = Trainer(s, tiny_base(), **folders(tmp_path, tiny_dataset(8, 1)))
    planned = trainer.settings
    assert planned.batch_size * planned.grad_accum_steps >= 4 and planned.batch_size > 1
    summary = trainer.run(progress=False)
    assert summary["settings"]["batch_size"] == planned.batch_size and summary["steps"] == 2
    with pytest.raises(XttsflowError, match="a GPU of 0.5 GB cannot train this model"):
        Trainer(settings(max_steps=1, gpu_memory_gb=0.5), tiny_base(), **folders(tmp_path / "small"))
