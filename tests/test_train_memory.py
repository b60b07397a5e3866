"""Memory and speed options of the train stage on the tiny XTTS: gradient checkpointing and the fused AdamW give
the plain path's losses and weights; length-grouped batches keep a random, exactly resumable order with less
padding; bf16 autocast on CPU stays within bf16's rounding of float32 and resumes exactly."""

from __future__ import annotations

import pytest
import torch
from train_fixtures import folders, settings, tiny_base, tiny_dataset

from xttsflow import checkpoints
from xttsflow.errors import XttsflowError
from xttsflow.train import Trainer, cpu_has_bf16
from xttsflow.train_data import EpochOrder, epoch_order


def _run(tmp, **overrides):
    trainer = Trainer(settings(**overrides), tiny_base(), **folders(tmp, tiny_dataset(8, 1)))
    summary = trainer.run(progress=False)
    last = checkpoints.load_state(checkpoints.periodic(trainer.run_dir)[-1])
    return [e["loss"] for e in summary["history"] if "loss" in e], last["trainable"]


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_plain_losses_and_weights(tmp_path):
    # dropout on (GPT-2's own 0.1 and LoRA's): the recomputed blocks must replay the same random numbers
    common = dict(max_steps=4, learning_rate=1e-3, lora_dropout=0.1)
    plain_losses, plain = _run(tmp_path / "plain", **common)
    ckpt_losses, ckpt = _run(tmp_path / "ckpt", gradient_checkpointing=True, **common)
    assert len(plain_losses) == 4
    torch.testing.assert_close(torch.tensor(ckpt_losses), torch.tensor(plain_losses), rtol=0, atol=1e-5)
    assert plain.keys() == ckpt.keys()
    for name, value in plain.items():
        torch.testing.assert_close(ckpt[name], value, rtol=0, atol=1e-5)


def test_gradient_checkpointing_is_on_only_while_training(tmp_path):
    trainer = Trainer(settings(max_steps=1, gradient_checkpointing=True), tiny_base(), **folders(tmp_path))
    gpt2 = trainer.model.xtts.gpt.gpt
    assert gpt2.gradient_checkpointing and gpt2.training
    # a run may switch checkpointing on or off and still resume: the weights do not depend on it
    plain = Trainer(settings(max_steps=1), tiny_base(), **folders(tmp_path / "plain"))
    assert plain.fingerprint == trainer.fingerprint


def test_grouped_order_is_a_random_permutation_of_length_sorted_batches():
    lengths = [int(x) for x in torch.randint(5 * 22050, 11 * 22050, (203,), generator=torch.Generator().manual_seed(1))]
    orders = [epoch_order(203, 7, epoch, lengths=lengths, group_batches=4, batch_size=8) for epoch in range(3)]
    for order in orders:
        assert sorted(order) == list(range(203))  # every clip once per epoch
        batches = [order[i : i + 8] for i in range(0, 203, 8)]
        assert len(batches[-1]) == 203 % 8  # the one short batch is last
        for batch in batches:
            assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)
    assert len({tuple(o) for o in orders}) == 3  # another epoch, another order
    # a function of (seed, epoch)
    assert orders[0] == epoch_order(203, 7, 0, lengths=lengths, group_batches=4, batch_size=8)
    # the batches come in random length order, not longest-last
    firsts = [lengths[orders[0][i]] for i in range(0, 200, 8)]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)
    # a resume by position sees exactly the rest of the epoch, with the same item seeds
    full = list(EpochOrder(203, 7, 0, 0, lengths=lengths, group_batches=4, batch_size=8))
    assert list(EpochOrder(203, 7, 0, 5 * 8, lengths=lengths, group_batches=4, batch_size=8)) == full[40:]


@pytest.mark.slow
def test_grouped_batches_resume_exactly(tmp_path):
    common = dict(batch_group_size=2, learning_rate=1e-3, lora_dropout=0.1, save_every_n_steps=100)
    straight_losses, straight = _run(tmp_path / "straight", max_steps=6, **common)
    _run(tmp_path / "resumed", max_steps=3, **common)  # stops mid-epoch (4 batches an epoch)
    resumed_losses, resumed = _run(tmp_path / "resumed", max_steps=6, **common)
    torch.testing.assert_close(torch.tensor(resumed_losses), torch.tensor(straight_losses), rtol=0, atol=1e-6)
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_fused_adamw_gives_the_plain_losses_and_weights(tmp_path):
    # full fine-tuning: every GPT tensor goes through the optimizer, with weight decay and clipping
    common = dict(max_steps=4, use_lora=False, learning_rate=1e-3, weight_decay=0.1, max_grad_norm=0.5)
    plain_losses, plain = _run(tmp_path / "plain", fused_optimizer=False, **common)
    fused_losses, fused = _run(tmp_path / "fused", fused_optimizer=True, **common)
    assert len(plain_losses) == 4 and plain_losses[-1] < plain_losses[0]  # the weights moved
    torch.testing.assert_close(torch.tensor(fused_losses), torch.tensor(plain_losses), rtol=0, atol=1e-5)
    assert plain.keys() == fused.keys()
    for name, value in plain.items():
        torch.testing.assert_close(fused[name], value, rtol=0, atol=1e-5)


def test_fused_optimizer_is_the_fused_kernel_and_a_run_may_switch_it(tmp_path):
    fused = Trainer(settings(max_steps=1), tiny_base(), **folders(tmp_path / "fused"))
    plain = Trainer(settings(max_steps=1, fused_optimizer=False), tiny_base(), **folders(tmp_path / "plain"))
    assert fused.optimizer.defaults["fused"] and not plain.optimizer.defaults["fused"]  # on by default
    # the same update up to float rounding (the test above): a run begun plain resumes fused, and a run
    # begun before the option existed (its fingerprint lacks it, and gpt_dropout) still resumes
    assert fused.fingerprint == plain.fingerprint
    assert "fused_optimizer" not in fused.fingerprint and "gpt_dropout" not in fused.fingerprint
    assert "gpt_dropout" in Trainer(settings(max_steps=1, gpt_dropout=0.0), tiny_base(),
                                    **folders(tmp_path / "nodrop")).fingerprint
    _run(tmp_path / "switched", max_steps=2, fused_optimizer=False)
    losses, _ = _run(tmp_path / "switched", max_steps=3)  # the plain optimizer's state, stepped by the fused one
    assert len(losses) == 3


@pytest.mark.slow
def test_fused_adamw_resumes_exactly(tmp_path):
    common = dict(use_lora=False, fused_optimizer=True, learning_rate=1e-3, save_every_n_steps=100)
    straight_losses, straight = _run(tmp_path / "straight", max_steps=6, **common)
    _run(tmp_path / "resumed", max_steps=3, **common)  # stops mid-epoch (4 batches an epoch)
    resumed_losses, resumed = _run(tmp_path / "resumed", max_steps=6, **common)
    assert len(resumed_losses) == 6
    torch.testing.assert_close(torch.tensor(resumed_losses), torch.tensor(straight_losses), rtol=0, atol=1e-6)
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6)


needs_cpu_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")


@needs_cpu_bf16
@pytest.mark.slow
def test_cpu_bf16_follows_the_float32_losses_and_resumes_exactly(tmp_path):
    common = dict(use_lora=False, learning_rate=1e-3, save_every_n_steps=100)
    fp32_losses, _ = _run(tmp_path / "fp32", max_steps=4, **common)  # amp_dtype auto: float32 on CPU
    straight_losses, straight = _run(tmp_path / "straight", max_steps=4, amp_dtype="bf16", **common)
    assert straight_losses != fp32_losses  # autocast ran: bf16's rounding shows in every loss
    torch.testing.assert_close(torch.tensor(straight_losses), torch.tensor(fp32_losses), rtol=0.02, atol=0)
    assert all(v.dtype == torch.float32 for v in straight.values())  # the weights stay float32
    _run(tmp_path / "resumed", max_steps=2, amp_dtype="bf16", **common)  # stops mid-epoch
    resumed_losses, resumed = _run(tmp_path / "resumed", max_steps=4, amp_dtype="bf16", **common)
    assert resumed_losses == straight_losses
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)


def test_cpu_bf16_without_native_support_is_refused_before_training(tmp_path, monkeypatch):
    from xttsflow import train

    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)  # the CPU probe, as on a CPU without AVX512-BF16
    with pytest.raises(XttsflowError, match="without native bfloat16"):
        Trainer(settings(max_steps=1, amp_dtype="bf16"), tiny_base(), **folders(tmp_path))
    assert not list(tmp_path.rglob("*.pt"))  # nothing written
