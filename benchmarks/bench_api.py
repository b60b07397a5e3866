"""REST API benchmark on loopback: latency p50/p99, first-audio latency and throughput of POST /synthesize and
OpenAI's POST /v1/audio/speech, whole and streamed, under a bounded concurrent load (tiny model), against
the same synthesis called in-process (the server's overhead).

    .venv/bin/python benchmarks/bench_api.py                  # 40 requests per row at concurrency 1 and 4
    .venv/bin/python benchmarks/bench_api.py --requests 200 --concurrency 1 4 8

First audio is the time until the first audio byte (past the 44-byte WAV header) reaches the client: for a
whole response that is the whole synthesis, streamed it is the first chunk of `--chunk-codes` codes. The
server is the real `python -m xttsflow.api` process with one generation slot and a queue deep enough for
the load, so every request must succeed: any failed request is reported and fails the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TEXT = "The quick brown fox jumps over the lazy dog. It ran into the woods at night. Nobody saw it again."
WAV_HEADER = 44
#: name -> (path, request body maker, whether the body is a form); all ask for 16-bit WAV at 24 kHz.
MODES = {
    "/synthesize": ("/synthesize", lambda i: {"text": TEXT, "seed": str(i)}, True),
    "/synthesize stream": ("/synthesize", lambda i: {"text": TEXT, "seed": str(i), "stream": "true"}, True),
    "/v1/audio/speech": ("/v1/audio/speech", lambda i: {"model": "base", "voice": "default", "input": TEXT,
                                                        "response_format": "wav", "seed": i}, False),
    "/v1/audio/speech stream": ("/v1/audio/speech", lambda i: {
        "model": "base", "voice": "default", "input": TEXT, "response_format": "wav", "stream_format": "audio",
        "seed": i}, False),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def make_workdir(root: Path) -> Path:
    """A workflow folder with a tiny base model and one reference clip (espeak-ng speech)."""
    from xttsflow.atomic import write_json
    from xttsflow.audio import write_wav
    from xttsflow.demo import espeak
    from xttsflow.xtts_model import build_tiny_checkpoint

    build_tiny_checkpoint(root / "models" / "base", seed=0)
    clip = root / "dataset" / "wavs" / "ref_0001.wav"
    write_wav(clip, 0.5 * espeak("This is the voice the model should clone, read slowly and clearly."), 22050)
    write_json(root / "samples" / "main" / "references.json", {"language": "en", "references": [{"file": str(clip)}]})
    return clip


def in_process(workdir: Path, clip: Path, codes: int, chunk_codes: int, n: int) -> tuple[float, float]:
    """Median seconds of the same synthesis without HTTP, whole and to the first streamed chunk: the floor the
    server's latency is read against. Run in a worker thread, as the server runs it (on a busy machine
    torch's main-thread pool of intra-op threads is many times slower than a worker thread's)."""
    from xttsflow.inference import Settings, get_synthesizer

    synth = get_synthesizer(workdir / "models" / "base", device="cpu")
    voice = synth.voice([clip])
    settings = Settings(max_new_tokens=codes)

    def whole() -> float:
        start = time.perf_counter()
        synth.synthesize(TEXT, "en", voice, settings)
        return time.perf_counter() - start

    def first_chunk() -> float:
        start = time.perf_counter()
        chunks = synth.stream_chunks(TEXT, "en", voice, settings, chunk_codes=chunk_codes)
        next(chunks)
        took = time.perf_counter() - start
        chunks.close()
        return took

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(whole).result()
        wholes = [pool.submit(whole).result() for _ in range(n)]
        firsts = [pool.submit(first_chunk).result() for _ in range(n)]
    return statistics.median(wholes), statistics.median(firsts)


def load(url: str, mode: str, requests: int, concurrency: int) -> dict:
    import httpx

    path, body, form = MODES[mode]

    def one(i: int) -> tuple[float, float, int]:
        start = time.perf_counter()
        first, size = None, 0
        kwargs = {"data": body(i)} if form else {"json": body(i)}
        with httpx.stream("POST", f"{url}{path}", timeout=600, **kwargs) as r:
            for chunk in r.iter_raw():
                size += len(chunk)
                if first is None and size > WAV_HEADER:
                    first = time.perf_counter() - start
            ok = r.status_code == 200 and r.headers.get("content-type") == "audio/wav" and size > WAV_HEADER
        total = time.perf_counter() - start
        return total, first or total, 0 if ok else r.status_code

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    latencies, firsts = [t for t, _, _ in results], [f for _, f, _ in results]
    return {"mode": mode, "concurrency": concurrency, "requests": requests,
            "failed": sum(1 for *_, code in results if code), "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "first_p50": percentile(firsts, 50),
            "first_p99": percentile(firsts, 99), "throughput": requests / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--codes", type=int, default=20, help="audio codes per sentence (~46 ms each)")
    parser.add_argument("--chunk-codes", type=int, default=8, help="audio codes per streamed chunk")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    args = parser.parse_args()
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        clip = make_workdir(workdir)
        floor, floor_first = in_process(workdir, clip, args.codes, args.chunk_codes, 5)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(workdir / "server.log", "w")  # noqa: SIM115 - open while the server runs
        server = subprocess.Popen(
            [sys.executable, "-m", "xttsflow.api", "--workdir", str(workdir), "--port", str(port), "--device", "cpu",
             "--preload", "base", "--max-new-tokens", str(args.codes), "--max-queue", str(max(args.concurrency)),
             "--stream-chunk-codes", str(args.chunk_codes)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "XTTSFLOW_API_TOKEN": ""},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)
            for mode in args.modes:
                load(url, mode, 2, 1)  # warm-up: the voice is computed once, the code paths run once
            rows = [load(url, mode, args.requests, c) for c in args.concurrency for mode in args.modes]
            health = httpx.get(f"{url}/health").json()
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    print(f"\nloopback, tiny model, 3 sentences of {args.codes} codes, streamed in chunks of {args.chunk_codes} codes, "
          f"{args.requests} requests per row; in-process synthesis of the same text: {floor:.3f} s, its first "
          f"streamed chunk: {floor_first:.3f} s (medians)")
    print(f"{'endpoint':<24} {'clients':>7} {'failed':>6} {'p50 s':>7} {'p99 s':>7} {'first p50':>9} "
          f"{'first p99':>9} {'req/s':>6} {'p50/in-process':>15}")
    for r in rows:
        print(f"{r['mode']:<24} {r['concurrency']:>7} {r['failed']:>6} {r['p50']:>7.3f} {r['p99']:>7.3f} "
              f"{r['first_p50']:>9.3f} {r['first_p99']:>9.3f} {r['throughput']:>6.2f} {r['p50'] / floor:>15.2f}")
    print("model loads in the server process:", json.dumps(health["loads"]))
    if any(r["failed"] for r in rows):
        sys.exit("some requests failed")


if __name__ == "__main__":
    main()
