"""Speech from an XTTS checkpoint folder: one model load per process, voices from reference clips or named
in the folder's speakers_xtts.pth, sentence-by-sentence synthesis that can be streamed to a WAV file for
long texts, and audio chunks as XTTS decodes them (coqui's inference_stream) for streaming over HTTP.

The CLI (`xttsflow synthesize speak`), the evaluation samples and the REST API all go through here.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
import os
import re
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from pydantic import ValidationError

from . import TRAIN_SAMPLE_RATE
from .atomic import atomic_path
from .audio import decode
from .devices import resolve_device
from .errors import XttsflowError
from .options import SamplingSettings
from .textnorm import expand_numbers

#: XTTS's [UNK] text token: the vocab has no piece for a character.
UNK_ID = 1

log = logging.getLogger(__name__)

#: XTTS computes speaker latents from at least this much audio (coqui refuses below 0.33 s).
MIN_REFERENCE_S = 0.5
#: Sentences shorter than this are joined to the next one: "Dr." or "No." alone makes a poor utterance.
MIN_SENTENCE_CHARS = 12
#: A sentence ends at . ! ? … ; and the Devanagari danda and Arabic question mark before a space, or at a
#: CJK full-width stop (Chinese and Japanese put no space after it, nor between words).
_CJK_STOPS = "。！？；"
_SENTENCE_END = re.compile(rf"(?<=[.!?…;।॥؟])\s+|(?<=[{_CJK_STOPS}])")
#: torch's random generator is process-wide: one generation at a time keeps every seed reproducible
#: (and one model's activations in GPU memory at a time).
_GENERATION_LOCK = threading.Lock()


class Settings(SamplingSettings):
    """Sampling settings as the synthesizer takes them; a value out of range is an XttsflowError naming it."""

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as err:
            item = err.errors()[0]
            name = str(item["loc"][0]) if item["loc"] else "settings"
            field = type(self).model_fields.get(name)
            allowed = _allowed(field.metadata) if field else item["msg"]
            raise XttsflowError(f"synthesis setting {name}={item.get('input')!r} is out of range — use a value "
                                f"{allowed}") from None

    @classmethod
    def from_config(cls, cfg: dict) -> Settings:
        """The settings named in a config section (other keys are ignored)."""
        return cls(**{k: v for k, v in cfg.items() if k in cls.model_fields and v is not None})

    def resolved(self, model_config) -> dict:
        """Every setting with the checkpoint's defaults filled in: what was really used, for the record."""
        values = self.model_dump()
        for name in ("temperature", "top_k", "top_p", "repetition_penalty", "length_penalty"):
            if values[name] is None:
                values[name] = getattr(model_config, name)
        return values


def _allowed(metadata: list) -> str:
    """A field's bounds in words: "in [0.01, 5]", "at least 1", ..."""
    bounds = {k: getattr(m, k) for m in metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    low = f"[{bounds['ge']}" if "ge" in bounds else f"({bounds['gt']}" if "gt" in bounds else None
    high = f"{bounds['le']}]" if "le" in bounds else f"{bounds['lt']})" if "lt" in bounds else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return ("at least " if low[0] == "[" else "above ") + low[1:]
    return ("at most " if high and high[-1] == "]" else "below ") + (high or "")[:-1]


@dataclasses.dataclass
class Voice:
    """A speaker as XTTS conditions on it: GPT latents and the HiFi-GAN speaker embedding."""

    gpt_cond_latent: object
    speaker_embedding: object
    references: list[str]


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Sentences of at most `max_chars` (longer ones wrapped at word boundaries), short ones joined on."""
    text = " ".join(text.split())
    pieces = [p for p in _SENTENCE_END.split(text) if p.strip()]
    joined: list[str] = []
    for piece in pieces:
        space = "" if joined and joined[-1][-1] in _CJK_STOPS else " "
        if joined and len(joined[-1]) < MIN_SENTENCE_CHARS and len(joined[-1] + space + piece) <= max_chars:
            joined[-1] += space + piece
        else:
            joined.append(piece)
    out = []
    for sentence in joined:
        if len(sentence) <= max_chars:
            out.append(sentence)
        else:
            out.extend(textwrap.wrap(sentence, max_chars, break_on_hyphens=False))
    return out


class Synthesizer:
    """One loaded XTTS checkpoint folder; thread-safe, generations are serialised."""

    def __init__(self, checkpoint_dir: str | os.PathLike, device: str = "auto"):
        import torch  # noqa: F401  (fail here, not mid-request, where torch is missing)

        from .xtts_model import load_xtts

        self.checkpoint_dir = Path(checkpoint_dir).resolve()
        self.device = resolve_device(device)
        start = time.perf_counter()
        self.model = load_xtts(self.checkpoint_dir, device=self.device)
        self._fold_weight_norm()
        self.config = self.model.config
        self.sample_rate = int(self.config.model_args.output_sample_rate)
        self.languages = self._working_languages()
        self._voices: collections.OrderedDict = collections.OrderedDict()
        self._voices_lock = threading.Lock()
        log.info("loaded XTTS %s on %s in %.1f s (languages: %s)", self.checkpoint_dir, self.device,
                 time.perf_counter() - start, ", ".join(self.languages))

    def _fold_weight_norm(self) -> None:
        """Fold the HiFi-GAN's weight norm into its weights once, as coqui's own decoder loader does for
        inference; otherwise every forward pass recomputes them (a few % of CPU decoding time)."""
        from torch.nn.utils import parametrize

        decoder = self.model.hifigan_decoder.waveform_decoder
        if parametrize.is_parametrized(decoder.conv_pre):
            decoder.remove_weight_norm()

    def _working_languages(self) -> list[str]:
        """The config's languages whose text front end runs here (ja/zh need extra packages, some have none)."""
        working = []
        for lang in self.config.languages:
            try:  # digits as sentences() hands them over: spelled out by our expander, as the dataset does
                self.model.tokenizer.encode(expand_numbers("hello 12.", lang), lang=lang)
            except Exception as err:  # noqa: BLE001 - any failure means "not usable here"; logged, not hidden
                log.info("language %s is unavailable with this checkpoint here: %s: %s", lang, type(err).__name__, err)
            else:
                working.append(lang)
        return working

    def check_language(self, language: str) -> str:
        if language not in self.languages:
            raise XttsflowError(
                f"language {language!r} is not available for {self.checkpoint_dir.name} — use one of "
                f"{', '.join(self.languages)}"
            )
        return language

    def voice(self, references: Sequence[str | os.PathLike]) -> Voice:
        """Conditioning from reference clip(s) of any format FFmpeg reads; cached per file content stamp."""
        if not references:
            raise XttsflowError("no reference clip given — XTTS clones a voice from 1-3 clips of 6-10 s of the speaker")
        key = tuple((str(Path(p).resolve()), *_stamp(p)) for p in references)
        with self._voices_lock:
            if key in self._voices:
                self._voices.move_to_end(key)
                return self._voices[key]
        voice = self._compute_voice([Path(p) for p in references])
        with self._voices_lock:
            self._voices[key] = voice
            while len(self._voices) > 16:
                self._voices.popitem(last=False)
        return voice

    def _compute_voice(self, paths: list[Path]) -> Voice:
        with _GENERATION_LOCK:
            return conditioning(self.model, paths, self.device)

    def voice_names(self) -> list[str]:
        """The named voices of the folder's speakers_xtts.pth (coqui's SpeakerManager loaded it)."""
        manager = self.model.speaker_manager
        return list(manager.speakers) if manager is not None else []

    def named_voice(self, name: str) -> Voice:
        """A voice stored in speakers_xtts.pth under `name` (XTTS's studio speakers, a fine-tuned speaker)."""
        if name not in self.voice_names():
            raise XttsflowError(f"{self.checkpoint_dir.name} has no voice named {name!r} — its voices: "
                                f"{', '.join(self.voice_names()) or 'none'}")
        entry = self.model.speaker_manager.speakers[name]
        return Voice(entry["gpt_cond_latent"].to(self.device), entry["speaker_embedding"].to(self.device),
                     [f"speakers_xtts.pth:{name}"])

    def sentences(self, text: str, language: str) -> list[str]:
        """The pieces XTTS speaks one at a time, each within its text-token limit."""
        self.check_language(language)
        if not any(ch.isalnum() for ch in text):
            raise XttsflowError("the text has nothing to speak (no letters or digits) — send words")
        # Numbers spelled out as the dataset stage does (years, times, Hindi, Czech ordinals included),
        # before coqui's own expander, which reads those wrong or fails on them.
        text = expand_numbers(text, language)
        limit = self.model.tokenizer.char_limits.get(language.split("-")[0], 250)
        out = []
        pending = split_sentences(text, limit)
        while pending:
            sentence = pending.pop(0)
            tokens = len(self._encode(sentence, language))
            if tokens < self.config.model_args.gpt_max_text_tokens - 2 or len(sentence) < 2:
                out.append(sentence)
            else:  # scripts the tokenizer splits into many tokens per character: halve until it fits
                half = len(sentence) // 2
                pending[:0] = [sentence[:half], sentence[half:]]
        return out

    def _encode(self, sentence: str, language: str) -> list[int]:
        try:
            ids = self.model.tokenizer.encode(sentence.lower(), lang=language)
        except Exception as err:  # noqa: BLE001 - coqui's text front end (num2words, cleaners) fails many ways
            raise XttsflowError(
                f"XTTS's {language} text front end cannot read {sentence[:60]!r} ({type(err).__name__}: "
                f"{str(err)[:80]}) — spell out very long numbers and unusual symbols as words"
            ) from err
        if UNK_ID in ids:  # XTTS would speak a guess for it: say which characters instead
            vocab = self.model.tokenizer.tokenizer
            bad = sorted({ch for ch in sentence.lower() if not ch.isspace() and UNK_ID in vocab.encode(ch).ids})
            raise XttsflowError(
                f"XTTS's {language} tokenizer cannot encode {' '.join(bad) or 'part of'} in {sentence[:60]!r} — "
                "remove those characters or write them in the language's own script"
            )
        return ids

    def _generation_kwargs(self, settings: Settings) -> dict:
        resolved = settings.resolved(self.config)
        kwargs = {k: resolved[k] for k in ("temperature", "top_k", "top_p", "repetition_penalty",
                                            "length_penalty", "speed")}
        if settings.max_new_tokens:
            kwargs["max_new_tokens"] = settings.max_new_tokens
        return kwargs

    def stream(self, text: str, language: str, voice: Voice, settings: Settings | None = None) -> Iterator[np.ndarray]:
        """Float32 audio at `sample_rate`, one sentence at a time (sentence i is sampled with seed + i)."""
        import torch

        settings = settings or Settings()
        kwargs = self._generation_kwargs(settings)
        for i, sentence in enumerate(self.sentences(text, language)):
            with _GENERATION_LOCK:
                torch.manual_seed(settings.seed + i)
                out = self.model.inference(sentence, language, voice.gpt_cond_latent, voice.speaker_embedding,
                                           **kwargs)
            yield np.asarray(out["wav"], dtype=np.float32).reshape(-1)

    def stream_chunks(self, text: str, language: str, voice: Voice, settings: Settings | None = None,
                      chunk_codes: int = 20, sentences: list[str] | None = None) -> Iterator[np.ndarray]:
        """Float32 audio as XTTS decodes it: coqui's inference_stream turns every `chunk_codes` audio codes
        into a chunk (cross-faded with the next), so the first audio comes after ~`chunk_codes` codes
        instead of after the whole text. Sentence i is sampled with seed + i, as in `stream`.

        The generation lock is held while a sentence streams: close the iterator (or exhaust it) to free it.
        """
        import torch

        settings = settings or Settings()
        kwargs = self._generation_kwargs(settings)
        for i, sentence in enumerate(sentences if sentences is not None else self.sentences(text, language)):
            with _GENERATION_LOCK, torch.inference_mode():
                torch.manual_seed(settings.seed + i)
                for chunk in self.model.inference_stream(sentence, language, voice.gpt_cond_latent,
                                                         voice.speaker_embedding, stream_chunk_size=chunk_codes,
                                                         **kwargs):
                    yield chunk.detach().float().cpu().numpy().reshape(-1)

    def synthesize(self, text: str, language: str, voice: Voice, settings: Settings | None = None) -> np.ndarray:
        chunks = list(self.stream(text, language, voice, settings))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def conditioning(model, paths: Sequence[str | os.PathLike], device) -> Voice:
    """XTTS's conditioning from reference clips with a loaded Xtts `model`: GPT latents over the clips joined
    (XTTS reads the first gpt_cond_len s of them), the HiFi-GAN speaker embedding averaged over the clips.
    The API, the evaluation and the export's named voices (xttsflow.voices) all compute voices here."""
    import torch

    config = model.config
    clips = []
    for path in paths:
        samples = decode(path, TRAIN_SAMPLE_RATE)
        seconds = len(samples) / TRAIN_SAMPLE_RATE
        if seconds < MIN_REFERENCE_S or not np.any(np.abs(samples) > 1e-4):
            raise XttsflowError(
                f"reference clip {path} is {seconds:.2f} s long{'' if np.any(samples) else ' and silent'} — "
                f"give at least {MIN_REFERENCE_S} s of speech (6-10 s works best)"
            )
        clip = samples[: int(config.max_ref_len * TRAIN_SAMPLE_RATE)]
        clips.append(torch.from_numpy(clip).unsqueeze(0).to(device))
    with torch.inference_mode():
        embedding = torch.stack([model.get_speaker_embedding(c, TRAIN_SAMPLE_RATE) for c in clips]).mean(0)
        latent = model.get_gpt_cond_latents(
            torch.cat(clips, dim=-1), TRAIN_SAMPLE_RATE,
            length=config.gpt_cond_len, chunk_length=config.gpt_cond_chunk_len,
        )
    return Voice(latent, embedding, [str(p) for p in paths])


def _stamp(path: str | os.PathLike) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as err:
        raise XttsflowError(f"reference clip {path} cannot be read ({err.strerror}) — check the path") from err
    return st.st_size, st.st_mtime_ns


# ---------- one model load per process ----------

_CACHE: collections.OrderedDict[tuple[str, str], Synthesizer] = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()
LOADS = collections.Counter()  # checkpoint folder -> times loaded in this process (the API reports it)


def get_synthesizer(checkpoint_dir: str | os.PathLike, device: str = "auto", max_loaded: int = 2) -> Synthesizer:
    """The process-wide Synthesizer of a checkpoint folder, loaded on first use; least recently used evicted."""
    key = (str(Path(checkpoint_dir).resolve()), resolve_device(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        synthesizer = Synthesizer(checkpoint_dir, device=key[1])
        LOADS[key[0]] += 1
        _CACHE[key] = synthesizer
        while len(_CACHE) > max(1, max_loaded):
            _CACHE.popitem(last=False)
        return synthesizer


def loaded_models() -> list[str]:
    with _CACHE_LOCK:
        return [path for path, _ in _CACHE]


# ---------- WAV output ----------


def write_wav_chunks(path: str | os.PathLike, chunks: Iterable[np.ndarray], sample_rate: int) -> float:
    """Write 16-bit mono WAV chunk by chunk as they are made (bounded memory), atomically; return seconds."""
    frames = 0
    with atomic_path(path) as tmp, sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=1, subtype="PCM_16",
                                                format="WAV") as f:
        for chunk in chunks:
            f.write(np.clip(chunk, -1.0, 1.0))
            frames += len(chunk)
            f.flush()
    return frames / sample_rate


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
