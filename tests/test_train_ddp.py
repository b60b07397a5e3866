"""Data-parallel training (train.gpus) on CPU: 2 gloo processes through torchrun against one process.

Two ranks with batch 2 are one optimizer step over 4 clips, as one process with batch 2 and 2 accumulation
steps is (coqui's loss is a mean per batch, so that, not batch 4, is the same global batch). Dropout is
off (gpt_dropout 0, lora_dropout 0): ranks draw their own masks, which no single process reproduces.
"""

from __future__ import annotations

import pytest
import torch
from train_fixtures import folders, settings, tiny_base, tiny_dataset

from xttsflow import checkpoints
from xttsflow.errors import XttsflowError
from xttsflow.train import train

pytestmark = pytest.mark.slow

EXACT = dict(gpt_dropout=0.0, learning_rate=1e-3, device="cpu", num_epochs=50)


def dataset():
    return tiny_dataset(8, 2)


def trainable(run_dir, step: int) -> dict[str, torch.Tensor]:
    return checkpoints.load_state(run_dir / checkpoints.periodic_name(step))["trainable"]


def max_difference(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    one = train(settings(**EXACT, max_steps=4, batch_size=2, grad_accum_steps=2), tiny_base(), progress=False,
                **folders(tmp_path / "one", dataset()))
    two = train(settings(**EXACT, max_steps=4, batch_size=2, gpus=2), tiny_base(), progress=False,
                **folders(tmp_path / "two", dataset()))
    assert one["steps"] == two["steps"] == 4
    run_one, run_two = tmp_path / "one/checkpoints/main", tmp_path / "two/checkpoints/main"
    moved = max_difference(trainable(run_one, 4), trainable(run_one, 2))
    assert moved > 1e-3, "the weights did not move: the comparison would prove nothing"
    assert max_difference(trainable(run_two, 4), trainable(run_one, 4)) < 1e-5
    assert checkpoints.load_state(run_two / checkpoints.periodic_name(4))["world"] == 2
    # rank 0 alone wrote the files: one export, no leftovers of the launch
    assert (run_two / "export" / "model.pth").is_file()
    assert not list(run_two.glob(".ddp_*")), sorted(p.name for p in run_two.iterdir())
    assert [e["step"] for e in two["history"] if "loss" in e] == [1, 2, 3, 4]


def test_a_ddp_checkpoint_continues_on_one_process_and_back(tmp_path, caplog):
    run = folders(tmp_path, dataset())
    train(settings(**EXACT, max_steps=1, gpus=2), tiny_base(), progress=False, **run)  # 4 clips of epoch 0
    with caplog.at_level("WARNING"):
        summary = train(settings(**EXACT, max_steps=3), tiny_base(), progress=False, **run)
    assert "trained on 2 process(es) (global batch 4); continuing on 1 (global batch 2)" in caplog.text
    assert "clip 4 of epoch 0" in caplog.text
    assert [e["step"] for e in summary["history"] if "loss" in e] == [1, 2, 3]  # nothing trained twice or lost
    caplog.clear()
    with caplog.at_level("WARNING"):
        summary = train(settings(**EXACT, max_steps=4, gpus=2), tiny_base(), progress=False, **run)
    assert summary["steps"] == 4 and [e["step"] for e in summary["history"] if "loss" in e] == [1, 2, 3, 4]
    state = checkpoints.load_state(run["run_dir"] / checkpoints.periodic_name(4))
    assert state["world"] == 2 and len(state["rng_ranks"]) == 2


def test_more_gpus_than_present_is_one_clear_sentence(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(XttsflowError, match=r"gpus is 2 but PyTorch sees 0 CUDA GPU\(s\).*device: cpu"):
        train(settings(gpus=2, device="auto", max_steps=1), tiny_base(), progress=False, **folders(tmp_path))
    with pytest.raises(XttsflowError, match="with gpus: 2 the processes take GPUs 0..1"):
        settings(gpus=2, cuda_device_id=1)


def test_a_rank_s_error_reaches_the_user_as_its_sentence(tmp_path):
    missing = tmp_path / "no-dataset"
    with pytest.raises(XttsflowError, match=f"dataset folder {missing} does not exist"):
        train(settings(**EXACT, max_steps=1, gpus=2), tiny_base(), progress=False,
              **folders(tmp_path, missing))
