"""XTTS-v2's own size on CPU: builtin:xtts-v2-size -> train (2 steps, LoRA, checkpointing) -> export -> coqui's
loader -> synthesis -> the REST API. About 10 GB of memory and 10 minutes on 2 cores: `make test-realsize`
runs it, the default `make test` leaves it out (pyproject.toml addopts)."""

from __future__ import annotations

import gc
import json
import os
import shutil

import httpx
import pytest
import soundfile as sf
import torch
from test_api import Server
from train_fixtures import settings, tiny_dataset

from xttsflow import OUTPUT_SAMPLE_RATE, checkpoints, inference, paths
from xttsflow.base_model import prepare_base_model
from xttsflow.inference import Settings
from xttsflow.synthesize import speak
from xttsflow.train import Trainer
from xttsflow.xtts_model import XTTS_V2_TEXT_TOKENS, read_config

pytestmark = pytest.mark.realsize


def test_xtts_v2_size_trains_exports_loads_speaks_and_serves(tmp_path):
    torch.set_num_threads(os.cpu_count() or 1)
    work = tmp_path / "voice"
    base = prepare_base_model("builtin:xtts-v2-size", work / paths.BASE_MODEL)
    args = read_config(base).model_args
    assert (args.gpt_layers, args.gpt_n_model_channels, args.gpt_n_heads) == (30, 1024, 16)
    assert args.gpt_number_text_tokens == XTTS_V2_TEXT_TOKENS == 6681
    assert (args.gpt_num_audio_tokens, args.gpt_start_audio_token, args.gpt_stop_audio_token) == (1026, 1024, 1025)
    assert (args.gpt_max_audio_tokens, args.gpt_max_text_tokens, args.gpt_max_prompt_tokens) == (605, 402, 70)
    assert args.decoder_input_dim == 1024
    assert 1.7e9 < (base / "model.pth").stat().st_size < 2.0e9  # XTTS-v2's own model.pth is 1.87 GB

    shutil.copytree(tiny_dataset(4, 1), work / "dataset")
    s = settings(max_steps=2, gradient_checkpointing=True, batch_group_size=48)
    trainer = Trainer(s, base, dataset_dir=work / "dataset", run_dir=work / "checkpoints" / "main",
                      log_dir=work / "runs" / "main")
    gpt = trainer.counts["gpt_total"]
    assert 430e6 < gpt < 450e6, gpt  # the GPT of XTTS-v2: 441 M parameters
    summary = trainer.run(progress=False)
    losses = [e["loss"] for e in summary["history"] if "loss" in e]
    assert summary["steps"] == 2 and len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    export = work / paths.export_dir("main")
    merged = checkpoints.load_state(export / "model.pth")["model"]
    base_weights = checkpoints.load_state(base / "model.pth")["model"]
    assert merged.keys() == base_weights.keys()
    assert any(not torch.equal(merged[k], base_weights[k]) for k in merged if ".attn.c_attn." in k)
    del trainer, merged, base_weights
    gc.collect()

    # coqui's own loader (Xtts.load_checkpoint) reads the export; synthesis speaks through it
    wav = tmp_path / "hello.wav"
    reference = str(work / "dataset" / "wavs" / "clip000.wav")
    seconds = speak(export, [reference], "Hello there.", "en", wav, Settings(max_new_tokens=8, seed=1), device="cpu")
    audio, rate = sf.read(wav)
    assert rate == OUTPUT_SAMPLE_RATE and seconds > 0 and len(audio) == pytest.approx(seconds * rate, abs=2)
    inference._CACHE.clear()  # this process's loaded model, freed before the server loads its own
    gc.collect()

    server = Server(work, tmp_path / "server.log", "--max-new-tokens", "8", "--device", "cpu")
    try:
        server.wait(timeout=600)
        models = {m["id"] for m in httpx.get(f"{server.url}/models").json()}
        assert {"base", "main"} <= models
        with open(reference, "rb") as clip:
            response = httpx.post(f"{server.url}/synthesize", data={"text": "Hello there.", "model": "main"},
                                  files={"reference": ("ref.wav", clip, "audio/wav")},
                                  timeout=600)
        assert response.status_code == 200, response.text
        assert float(response.headers["x-audio-seconds"]) > 0
    finally:
        server.stop()
    assert json.loads((export / "xttsflow.json").read_text())["exported_step"] == 2
