"""Transcribe stage benchmark: throughput in x real time, batched vs one by one, and the stage's overhead.

    .venv/bin/python benchmarks/bench_transcribe.py [--threads 2] [--repeat 2] [--clips 16]

On the same clips (LJSpeech clips from ../shared/fixtures, else espeak-ng sentences) it prints, for each
backend the machine can run:
  1. faster-whisper (the bundled tiny.en, CTranslate2) called directly, one clip at a time
     (WhisperModel.transcribe) and batched per file (BatchedInferencePipeline.transcribe, what a user would
     write) - against the stage (xttsflow.transcribe.transcribe_source) with batch_size 1 and 8, which adds
     decoding from WAV, the hallucination screen, the resume journal and the JSON file;
  2. openai-whisper on a tiny checkpoint built here (no real weights can be downloaded offline): the stage
     against whisper.transcribe on the same files - the overhead figure is what matters there;
  3. speaker embeddings (Resemblyzer) in x real time;
  4. on a GPU, the same for faster-whisper with float16 and the worker count the stage plans.
Each configuration runs --repeat times, interleaved; the best time counts (the machine is shared).
The model load is outside every timing; the stage's own load is subtracted the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xttsflow.atomic import write_json  # noqa: E402
from xttsflow.audio import write_wav  # noqa: E402
from xttsflow.demo import DEMO_SENTENCES, espeak  # noqa: E402
from xttsflow.transcribe import (  # noqa: E402
    DEFAULTS,
    build_tiny_whisper,
    make_transcriber,
    plan_workers,
    resolve_model,
    token_budget,
    transcribe_files,
    transcribe_source,
    word_error_rate,
)

FIXTURES = Path(os.environ.get("XTTSFLOW_FIXTURES", REPO.parent / "shared" / "fixtures"))


def make_clips(folder: Path, limit: int) -> tuple[Path, list[str | None]]:
    """A segments folder + manifest in the segment stage's layout; the reference text where known."""
    seg_dir = folder / "segments" / "bench"
    seg_dir.mkdir(parents=True)
    # The transcribed clips first, so that a short run (--clips 5) still reports a WER.
    sources = [*sorted((FIXTURES / "ljspeech").glob("wavs/*.wav")),
               *sorted((FIXTURES / "ljspeech").glob("unlabeled/*.wav"))]
    texts = {}
    if (FIXTURES / "ljspeech" / "metadata.csv").is_file():
        for line in (FIXTURES / "ljspeech" / "metadata.csv").read_text().splitlines():
            texts[line.split("|")[0]] = line.split("|")[1]
    segments, references = [], []
    if sources:
        for i, wav in enumerate(sources[:limit]):
            shutil.copy(wav, seg_dir / f"bench_{i:04d}.wav")
            references.append(texts.get(wav.stem))
    else:
        for i, text in enumerate(DEMO_SENTENCES[:limit]):
            write_wav(seg_dir / f"bench_{i:04d}.wav", espeak(text, speed=150) * 0.5, 22050)
            references.append(text)
    for i in range(len(references)):
        duration = sf.info(str(seg_dir / f"bench_{i:04d}.wav")).duration
        segments.append({"id": f"bench_{i:04d}", "file": f"bench_{i:04d}.wav", "duration": duration})
    write_json(folder / "segments" / "bench.json", {"source": "bench", "speaker": "bench", "language": "en",
                                                    "segments": segments})
    return folder / "segments" / "bench.json", references


def best(results: dict, name: str, seconds: float) -> None:
    results[name] = min(results.get(name, float("inf")), seconds)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--beam-size", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ["TQDM_DISABLE"] = "1"  # the stage's per-job progress bar would interleave with the table

    import ctranslate2
    import faster_whisper
    import torch
    import whisper

    work = Path(tempfile.mkdtemp(prefix="bench-transcribe-"))
    manifest, references = make_clips(work, args.clips)
    seg_dir = manifest.with_suffix("")
    paths = sorted(seg_dir.glob("*.wav"))
    audio_s = sum(sf.info(str(p)).duration for p in paths)
    device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    print(f"{len(paths)} clips, {audio_s:.1f} s of audio, {args.threads} thread(s), device {device}, "
          f"beam {args.beam_size}, faster-whisper {faster_whisper.__version__}, "
          f"openai-whisper {whisper.__version__}\n")

    fw_path = resolve_model("bundled:tiny.en")
    compute = "float16" if device == "cuda" else "auto"
    cfg = {**DEFAULTS, "model": "bundled:tiny.en", "beam_size": args.beam_size, "compute_type": compute,
           "device": device, "workers": 1}
    model = faster_whisper.WhisperModel(fw_path, device=device, compute_type=compute, cpu_threads=args.threads)
    pipeline = faster_whisper.BatchedInferencePipeline(model)
    opts = {"language": "en", "beam_size": args.beam_size, "word_timestamps": True}
    # The stage loads its model inside transcribe_source; time that load alone to take it out.
    load_s = min(timed(lambda: make_transcriber(cfg, args.threads)) for _ in range(2))

    def direct_one_by_one():
        return [" ".join(s.text for s in model.transcribe(
            str(p), vad_filter=False, condition_on_previous_text=False, **opts)[0]) for p in paths]

    def direct_same_options():
        """What the stage asks of faster-whisper, called by hand: the pure overhead is the difference."""
        return [" ".join(s.text for s in model.transcribe(
            str(p), vad_filter=False, condition_on_previous_text=False, no_speech_threshold=None,
            log_prob_threshold=None, max_new_tokens=token_budget(sf.info(str(p)).duration), **opts)[0])
            for p in paths]

    def direct_batched_per_file():
        return [" ".join(s.text for s in pipeline.transcribe(str(p), batch_size=8, **opts)[0]) for p in paths]

    def stage(batch_size: int, out: str):
        def run():
            transcribe_source(manifest, seg_dir, work / out, {**cfg, "batch_size": batch_size}, threads=args.threads)
        return run

    results, texts = {}, {}
    for _ in range(args.repeat):
        start = time.perf_counter()
        texts["direct one by one"] = direct_one_by_one()
        best(results, "faster-whisper direct, one by one", time.perf_counter() - start)
        start = time.perf_counter()
        texts["direct same options"] = direct_same_options()
        best(results, "faster-whisper direct, one by one, the stage's options", time.perf_counter() - start)
        start = time.perf_counter()
        texts["direct batched per file"] = direct_batched_per_file()
        best(results, "faster-whisper direct, BatchedInferencePipeline per file", time.perf_counter() - start)
        best(results, "stage faster-whisper, batch_size 1", timed(stage(1, "t1.json")) - load_s)
        best(results, "stage faster-whisper, batch_size 8", timed(stage(8, "t8.json")) - load_s)

    for name, out in (("stage faster-whisper, batch_size 1", "t1.json"), ("stage faster-whisper, batch_size 8",
                                                                            "t8.json")):
        texts[name] = [s["text"] for s in json.loads((work / out).read_text())["segments"]]
    labelled = [i for i, r in enumerate(references) if r]

    def wer(name: str) -> str:
        if not labelled:
            return ""
        refs, hyps = [references[i] for i in labelled], [texts[name][i] for i in labelled]
        return f"  WER {100 * word_error_rate(refs, hyps):.1f}% on {len(labelled)} labelled clips"

    print("faster-whisper (bundled tiny.en), model load excluded:")
    for name, seconds in results.items():
        key = {"faster-whisper direct, one by one": "direct one by one",
               "faster-whisper direct, BatchedInferencePipeline per file": "direct batched per file",
               "faster-whisper direct, one by one, the stage's options": "direct same options"}.get(name, name)
        print(f"  {name:58s} {seconds:7.2f} s  {audio_s / seconds:6.1f}x real time{wer(key)}")
    one = results["stage faster-whisper, batch_size 1"] / results["faster-whisper direct, one by one"] - 1
    print(f"  stage batch_size 1 vs direct one by one (library defaults): {100 * one:+.1f}%")
    one = results["stage faster-whisper, batch_size 1"] / results[
        "faster-whisper direct, one by one, the stage's options"] - 1
    print(f"  stage overhead: batch_size 1 vs direct with its options:  {100 * one:+.1f}%")
    speed = results["faster-whisper direct, one by one"] / results["stage faster-whisper, batch_size 8"]
    print(f"  stage batch_size 8 vs direct one by one:                   {speed:.2f}x faster")
    speed = results["faster-whisper direct, BatchedInferencePipeline per file"] / results[
        "stage faster-whisper, batch_size 8"]
    print(f"  stage batch_size 8 vs BatchedInferencePipeline per file:   {speed:.2f}x faster\n")

    # openai-whisper: a tiny checkpoint built here (no weights to download offline).
    ckpt = build_tiny_whisper(work / "tiny.pt", text=" the", language="en")
    ow_cfg = {**DEFAULTS, "backend": "openai-whisper", "model": str(ckpt), "beam_size": args.beam_size,
              "device": "cuda" if torch.cuda.is_available() else "cpu", "workers": 1, "detect_language": False}
    ow_model = whisper.load_model(str(ckpt), device=ow_cfg["device"])
    torch.set_num_threads(args.threads)
    ow_load = min(timed(lambda: make_transcriber(ow_cfg, args.threads)) for _ in range(2))

    def ow_direct(**same):
        def run():
            for p in paths:
                extra = {k: v(p) if callable(v) else v for k, v in same.items()}
                whisper.transcribe(ow_model, str(p), language="en", beam_size=args.beam_size,
                                   best_of=args.beam_size, fp16=ow_cfg["device"] == "cuda",
                                   condition_on_previous_text=False, word_timestamps=True, verbose=None, **extra)
        return run

    ow = {}
    ow_direct()()  # warm up numba's DTW compile, which both sides would otherwise pay once
    stage_options = {"sample_len": lambda p: token_budget(sf.info(str(p)).duration), "no_speech_threshold": None,
                     "logprob_threshold": None}
    for _ in range(args.repeat):
        best(ow, "direct whisper.transcribe", timed(ow_direct()))
        best(ow, "direct whisper.transcribe, the stage's options", timed(ow_direct(**stage_options)))
        best(ow, "stage openai-whisper", timed(lambda: transcribe_source(
            manifest, seg_dir, work / "ow.json", ow_cfg, threads=args.threads)) - ow_load)
    print("openai-whisper (tiny checkpoint built from ModelDimensions; speed says nothing about a real model):")
    for name, seconds in ow.items():
        print(f"  {name:58s} {seconds:7.2f} s  {audio_s / seconds:6.1f}x real time")
    print(f"  stage vs direct (library defaults):                        "
          f"{100 * (ow['stage openai-whisper'] / ow['direct whisper.transcribe'] - 1):+.1f}%")
    same = ow["direct whisper.transcribe, the stage's options"]
    print(f"  stage overhead vs direct with its options:                 "
          f"{100 * (ow['stage openai-whisper'] / same - 1):+.1f}%\n")

    from xttsflow.speaker import embed_files

    embed_files(paths[:1])  # load the encoder outside the timing
    seconds = min(timed(lambda: embed_files(paths, threads=args.threads)) for _ in range(args.repeat))
    print(f"speaker embeddings (Resemblyzer): {seconds:.2f} s, {audio_s / seconds:.0f}x real time")

    if device == "cuda":
        print("\nGPU worker plan:")
        for name in ("tiny", "medium", "large-v3"):
            n = plan_workers({**cfg, "model": name, "workers": "auto"}, "cuda", threads=args.threads, n_files=1000)
            print(f"  {name:10s} float16 batch 8: {n} worker(s)")
        start = time.perf_counter()
        transcribe_files(paths, "en", {**cfg, "workers": "auto", "batch_size": 8}, threads=args.threads)
        seconds = time.perf_counter() - start
        print(f"  tiny.en, auto workers (model loads included): {seconds:.2f} s, {audio_s / seconds:.1f}x real time")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
