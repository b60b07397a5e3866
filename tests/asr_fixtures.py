"""Test fixture: a tiny openai-whisper checkpoint that says a known text, loadable with whisper.load_model."""

from __future__ import annotations

import os
from pathlib import Path


def build_tiny_whisper(path: str | os.PathLike, text: str = " bom dia", language: str = "pt", seed: int = 0) -> Path:
    """A tiny openai-whisper checkpoint (from ModelDimensions) that hears `language` and says `text`, for tests.

    Random weights, except that the decoder's blocks are switched off and its positional embeddings
    spell out: <|language|> at detection, then <|0.00|> `text` <|1.00|> <|endoftext|>. Loads with
    whisper.load_model.
    """
    import dataclasses

    import torch
    import whisper
    from whisper.model import ModelDimensions

    tokenizer = whisper.tokenizer.get_tokenizer(True, num_languages=99, language=language, task="transcribe")
    # A closing timestamp ends the segment, so Whisper moves on to the next 30 s window rather than re-decoding.
    chain = [tokenizer.timestamp_begin, *tokenizer.encode(text), tokenizer.timestamp_begin + 50, tokenizer.eot]
    lang_token = tokenizer.to_language_token(language)
    if len(set(chain)) != len(chain) or len(chain) > 60:
        raise ValueError(f"text {text!r} must be a few distinct tokens")
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2)
    torch.manual_seed(seed)
    model = whisper.model.Whisper(dims)
    decoder = model.decoder
    with torch.no_grad():
        decoder.token_embedding.weight.normal_(0.0, 0.01)
        decoder.positional_embedding.zero_()
        for block in decoder.blocks:  # each block adds nothing: logits follow token + position embeddings only
            for layer in (block.attn.out, block.cross_attn.out, block.mlp[2]):
                layer.weight.zero_()
                layer.bias.zero_()
        # Token k of the chain owns direction k; position p points at the token that must come next.
        directions = {token: k for k, token in enumerate([lang_token, *chain])}
        for token, k in directions.items():
            decoder.token_embedding.weight[token] = 0.0
            decoder.token_embedding.weight[token, k] = 5.0
        decoder.positional_embedding[0, directions[lang_token]] = 20.0  # after <|startoftranscript|>: language
        for step, token in enumerate(chain):  # sot, lang, task occupy positions 0..2; sampling starts after 2
            decoder.positional_embedding[2 + step, directions[token]] = 20.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path
