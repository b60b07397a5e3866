"""Transcribe stage benchmark: throughput in x real time, batched vs one by one, and the stage's overhead.

    .venv/bin/python benchmarks/bench_transcribe.py [--threads 2] [--repeat 2] [--clips 12]

On the same clips (LJSpeech clips from ../shared/fixtures, else espeak-ng sentences), side by side:
  1. faster-whisper with the bundled tiny.en (CTranslate2), called directly - one clip at a time
     (WhisperModel.transcribe) with the library's defaults and with the options the stage passes, and
     BatchedInferencePipeline per file (what a user would write) - against the stage
     (xttsflow.transcribe.transcribe_source, batch_size 1 and 8), which adds reading the WAVs, the
     hallucination screen, the resume journal and the JSON file;
  2. openai-whisper on a tiny checkpoint built here (no real weights can be downloaded offline), direct
     whisper.transcribe against the stage: the overhead is what that comparison is for;
  3. speaker embeddings (Resemblyzer, batched) in x real time;
  4. on a GPU, faster-whisper float16 and the number of workers the stage plans per model.
Every configuration runs --repeat times, interleaved; the best counts. Wall time and this process's CPU time
are both shown: on a shared machine the CPU time is the steadier measure of overhead. Model loads are
outside every timing (the stage's own load is timed alone and subtracted).
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
sys.path.insert(0, str(REPO / "tests"))  # the tiny openai-whisper checkpoint is a test fixture

from asr_fixtures import build_tiny_whisper  # noqa: E402

from xttsflow.asr.backend import token_budget  # noqa: E402
from xttsflow.asr.models import resolve_model  # noqa: E402
from xttsflow.asr.transcriber import make_transcriber  # noqa: E402
from xttsflow.asr.workers import plan_workers, transcribe_files  # noqa: E402
from xttsflow.atomic import write_json  # noqa: E402
from xttsflow.audio import write_wav  # noqa: E402
from xttsflow.demo import DEMO_SENTENCES, espeak  # noqa: E402
from xttsflow.text_metrics import word_error_rate  # noqa: E402
from xttsflow.transcribe import TranscribeConfig, transcribe_source  # noqa: E402

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
        texts = {ln.split("|")[0]: ln.split("|")[1]
                 for ln in (FIXTURES / "ljspeech" / "metadata.csv").read_text().splitlines() if ln}
    references = []
    if sources:
        for i, wav in enumerate(sources[:limit]):
            shutil.copy(wav, seg_dir / f"bench_{i:04d}.wav")
            references.append(texts.get(wav.stem))
    else:
        for i, text in enumerate(DEMO_SENTENCES[:limit]):
            write_wav(seg_dir / f"bench_{i:04d}.wav", espeak(text, speed=150) * 0.5, 22050)
            references.append(text)
    segments = [{"id": f"bench_{i:04d}", "file": f"bench_{i:04d}.wav",
                 "duration": sf.info(str(seg_dir / f"bench_{i:04d}.wav")).duration} for i in range(len(references))]
    write_json(folder / "segments" / "bench.json", {"source": "bench", "speaker": "bench", "language": "en",
                                                    "segments": segments})
    return folder / "segments" / "bench.json", references


def measure(fn) -> tuple[float, float, object]:
    """Wall seconds, this process's CPU seconds, and what fn returned."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def run_side_by_side(configs: dict, repeat: int, subtract: dict) -> tuple[dict, dict]:
    """Best (wall, cpu) per configuration over interleaved repeats, less its `subtract` (wall, cpu); outputs."""
    best, outputs = {}, {}
    for _ in range(repeat):
        for name, fn in configs.items():
            wall, cpu, outputs[name] = measure(fn)
            less = subtract.get(name, (0.0, 0.0))
            old = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(old[0], wall - less[0]), min(old[1], cpu - less[1]))
    return best, outputs


def report(title: str, best: dict, audio_s: float, wer: dict | None = None) -> None:
    print(title)
    for name, (wall, cpu) in best.items():
        extra = f"  WER {100 * wer[name]:.1f}%" if wer and name in wer else ""
        print(f"  {name:56s} {wall:7.2f} s wall {audio_s / wall:6.1f}x real time  {cpu:7.2f} s CPU{extra}")


def ratio(best: dict, a: str, b: str, label: str) -> None:
    wall, cpu = (best[a][i] / best[b][i] - 1 for i in (0, 1))
    print(f"  {label:56s} {100 * wall:+7.1f}% wall  {100 * cpu:+7.1f}% CPU")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--clips", type=int, default=12)
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
    labelled = [i for i, r in enumerate(references) if r]

    # ---- faster-whisper ----
    compute = "float16" if device == "cuda" else "auto"
    cfg = {"model": "bundled:tiny.en", "beam_size": args.beam_size, "compute_type": compute, "device": device,
           "workers": 1}
    model = faster_whisper.WhisperModel(resolve_model("bundled:tiny.en"), device=device, compute_type=compute,
                                        cpu_threads=args.threads)
    pipeline = faster_whisper.BatchedInferencePipeline(model)
    opts = {"language": "en", "beam_size": args.beam_size, "word_timestamps": True}
    stage_opts = {"vad_filter": False, "condition_on_previous_text": False, "no_speech_threshold": None,
                  "log_prob_threshold": None}

    def texts_of(segments) -> str:
        return "".join(s.text for s in segments).strip()

    def stage(batch_size: int, out: str):
        def run():
            transcribe_source(manifest, seg_dir, work / out, TranscribeConfig(**cfg, batch_size=batch_size),
                              threads=args.threads)
            return [s["text"] for s in json.loads((work / out).read_text())["segments"]]
        return run

    fw = {
        "direct WhisperModel.transcribe, library defaults": lambda: [texts_of(model.transcribe(
            str(p), vad_filter=False, condition_on_previous_text=False, **opts)[0]) for p in paths],
        "direct WhisperModel.transcribe, the stage's options": lambda: [texts_of(model.transcribe(
            str(p), max_new_tokens=token_budget(sf.info(str(p)).duration), **stage_opts, **opts)[0])
            for p in paths],
        "direct BatchedInferencePipeline, one file per call": lambda: [texts_of(pipeline.transcribe(
            str(p), batch_size=8, **opts)[0]) for p in paths],
        "stage, batch_size 1": stage(1, "t1.json"),
        "stage, batch_size 8": stage(8, "t8.json"),
    }
    # What the stage spends loading the model:
    load = measure(lambda: make_transcriber(TranscribeConfig(**cfg), args.threads))[:2]
    best, outputs = run_side_by_side(fw, args.repeat, {"stage, batch_size 1": load, "stage, batch_size 8": load})
    wer = {name: word_error_rate([references[i] for i in labelled], [out[i] for i in labelled])
           for name, out in outputs.items()} if labelled else None
    report(f"faster-whisper, bundled tiny.en (WER on the {len(labelled)} labelled clips):", best, audio_s, wer)
    ratio(best, "stage, batch_size 1", "direct WhisperModel.transcribe, the stage's options",
          "stage overhead (batch_size 1 vs direct, same options)")
    ratio(best, "stage, batch_size 1", "direct WhisperModel.transcribe, library defaults",
          "stage batch_size 1 vs direct, library defaults")
    ratio(best, "stage, batch_size 8", "stage, batch_size 1", "batched (8) vs one by one, both in the stage")
    ratio(best, "stage, batch_size 8", "direct BatchedInferencePipeline, one file per call",
          "stage batch_size 8 vs BatchedInferencePipeline per file")
    print()

    # ---- openai-whisper: a tiny checkpoint built here ----
    ckpt = build_tiny_whisper(work / "tiny.pt", text=" the", language="en")
    ow_device = "cuda" if torch.cuda.is_available() else "cpu"
    ow_cfg = TranscribeConfig(backend="openai-whisper", model=str(ckpt), beam_size=args.beam_size, device=ow_device,
                              workers=1, detect_language=False)
    ow_model = whisper.load_model(str(ckpt), device=ow_device)
    torch.set_num_threads(args.threads)

    def ow_direct(same: bool):
        def run():
            for p in paths:
                extra = {"sample_len": token_budget(sf.info(str(p)).duration), "no_speech_threshold": None,
                         "logprob_threshold": None} if same else {}
                whisper.transcribe(ow_model, str(p), language="en", beam_size=args.beam_size,
                                   best_of=args.beam_size, fp16=ow_device == "cuda",
                                   condition_on_previous_text=False, word_timestamps=True, verbose=None, **extra)
        return run

    ow_direct(True)()  # numba compiles Whisper's DTW on first use: keep that out of both sides
    ow = {"direct whisper.transcribe, library defaults": ow_direct(False),
          "direct whisper.transcribe, the stage's options": ow_direct(True),
          "stage": lambda: transcribe_source(manifest, seg_dir, work / "ow.json", ow_cfg, threads=args.threads)}
    ow_load = measure(lambda: make_transcriber(ow_cfg, args.threads))[:2]
    best, _ = run_side_by_side(ow, args.repeat, {"stage": ow_load})
    report("openai-whisper, tiny checkpoint from ModelDimensions (its speed says nothing about a real model):",
           best, audio_s)
    ratio(best, "stage", "direct whisper.transcribe, the stage's options", "stage overhead (vs direct, same options)")
    print()

    # ---- speaker embeddings ----
    from xttsflow.speaker import embed_files

    embed_files(paths[:1])  # load the encoder outside the timing
    best, _ = run_side_by_side({"Resemblyzer, all partials of 32 clips per LSTM pass":
                                lambda: embed_files(paths, threads=args.threads)}, args.repeat, {})
    report("speaker embeddings:", best, audio_s)

    if device == "cuda":
        print("\nGPU: workers the stage plans (float16, batch 8, 16 threads):")
        for name in ("tiny", "small", "medium", "large-v3"):
            n = plan_workers(TranscribeConfig(**{**cfg, "model": name, "workers": "auto", "batch_size": 8}), "cuda",
                             threads=16, n_files=1000)
            print(f"  {name:10s} {n} worker(s)")
        auto = TranscribeConfig(**{**cfg, "workers": "auto", "batch_size": 8})
        wall, _, _ = measure(lambda: transcribe_files(paths, "en", auto, threads=args.threads))
        print(f"  tiny.en with auto workers, loads included: {wall:.2f} s, {audio_s / wall:.1f}x real time")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
