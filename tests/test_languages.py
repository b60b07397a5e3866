"""Every XTTS-v2 language through the workflow's text, training and synthesis paths: one row per language.

Each row takes one evaluation sentence of its language with a number in it, spoken by espeak-ng where it
has a voice for the language: the dataset stage's normalisation and XTTS-tokenizer check (tiny model's
vocab), one LoRA training step on the tiny model (coqui's own batch preparation and losses), and a
synthesis through coqui's text front end. A language this installation cannot support would be refused
at config time, with its reason (tests/test_config.py checks that path); here every one of the 17 runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from train_fixtures import tiny_base

from xttsflow.audio import write_wav
from xttsflow.demo import espeak
from xttsflow.frontends import check_languages
from xttsflow.languages import ESPEAK_VOICES
from xttsflow.synthesize import DEFAULT_SENTENCES
from xttsflow.textnorm import XTTS_LANGUAGES, XttsText, normalize

pytestmark = pytest.mark.slow  # ~40 s for the tiny model, then 13-36 s per language on 2 loaded cores


@pytest.fixture(scope="module")
def tiny():
    """The tiny XTTS as the trainer builds it (LoRA on the GPT) and as the synthesizer loads it, once."""
    from xttsflow.gpt_model import apply_lora, build_gpt_trainer
    from xttsflow.inference import Synthesizer
    from xttsflow.settings import LORA_TARGETS

    base = tiny_base()
    model = build_gpt_trainer(base, batch_size=1)
    apply_lora(model, rank=4, alpha=8, dropout=0.0, targets=list(LORA_TARGETS))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    synth = Synthesizer(base, device="cpu")
    reference = tiny_base().parent / "reference.wav"  # one voice for every row: the language is in the text
    write_wav(reference, espeak(DEFAULT_SENTENCES["en"][3], speed=160) * 0.5, 22050)
    return {"base": base, "model": model, "params": params, "optimizer": optimizer, "synth": synth,
            "voice": synth.voice([reference]), "text": XttsText(base / "vocab.json")}


def test_the_table_covers_every_xtts_language():
    assert sorted(DEFAULT_SENTENCES) == sorted(XTTS_LANGUAGES) and len(XTTS_LANGUAGES) == 17
    assert check_languages(XTTS_LANGUAGES) == {}  # nothing is refused here: every front end is installed


@pytest.mark.parametrize("language", XTTS_LANGUAGES)
def test_language_row(language, tiny, tmp_path):
    from xttsflow import train_data
    from xttsflow.inference import Settings
    from xttsflow.train import forward

    text = f"{DEFAULT_SENTENCES[language][2]} 25"
    # 1. the dataset stage: digits spelled out in the language, every character encodable, under 200 tokens
    normalized = normalize(text, language)
    assert not any(ch.isdigit() for ch in normalized), normalized
    check = tiny["text"].check(normalized, language)
    assert check.error is None and check.unsupported == "" and 2 < check.tokens <= 200, check

    # 2. one LoRA step on a clip of espeak-ng speech in the language (or English where espeak has no voice)
    wav = tmp_path / "clip.wav"
    write_wav(wav, espeak(DEFAULT_SENTENCES[language][2], voice=ESPEAK_VOICES.get(language, "en-us"),
                          speed=200) * 0.5, 22050)
    sample = {"text": normalized, "audio_file": str(wav), "language": language, "speaker_name": "row"}
    tokenizer = tiny["model"].xtts.tokenizer
    kept = train_data.screen([sample], tokenizer, language)
    assert kept.samples == [sample], kept.rejected
    batch = train_data.collate([train_data.ClipDataset(kept.samples, tokenizer)[(0, 1)]])
    before = [p.detach().clone() for p in tiny["params"]]
    losses = forward(tiny["model"], batch, torch.device("cpu"), None)
    loss = losses["loss"]
    assert math.isfinite(loss.item()) and loss.item() > 0
    tiny["optimizer"].zero_grad()
    loss.backward()
    tiny["optimizer"].step()
    assert any(not torch.equal(a, b) for a, b in zip(before, tiny["params"], strict=True))

    # 3. synthesis through coqui's text front end, the number included
    synth = tiny["synth"]
    assert language in synth.languages
    audio = synth.synthesize(text, language, tiny["voice"], Settings(seed=1, max_new_tokens=6))
    assert audio.size > 0 and np.isfinite(audio).all()


def test_text_the_tokenizer_cannot_encode_is_a_clear_error(tiny):
    from xttsflow.errors import XttsflowError

    with pytest.raises(XttsflowError, match="tokenizer cannot encode 🙂 in 'The keeper smiled 🙂"):
        tiny["synth"].sentences("The keeper smiled 🙂 at the sea.", "en")
    assert tiny["synth"].sentences("The keeper smiled at the sea.", "en") == ["The keeper smiled at the sea."]
