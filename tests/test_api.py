"""The REST API as users run it: a real uvicorn server process on a free loopback port, real HTTP requests,
tiny random XTTS checkpoints; bad input gets a clear 4xx, never a 5xx; a schemathesis fuzz of the spec."""

from __future__ import annotations

import concurrent.futures
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from apikit import Server, free_port
from evalkit import eval_workdir, tiny_models  # noqa: F401  (fixtures)
from faultlog import record

from xttsflow import OUTPUT_SAMPLE_RATE
from xttsflow.audio import write_wav
from xttsflow.evaluate import EvaluateConfig, choose_references

TOKEN = "a-test-token-of-enough-length"
LIMITS = ["--max-new-tokens", "6", "--max-upload-mb", "1", "--max-text-chars", "400", "--max-queue", "2",
          "--max-reference-seconds", "20", "--device", "cpu"]


@pytest.fixture(scope="module")
def server(eval_workdir, tmp_path_factory):  # noqa: F811
    choose_references(eval_workdir / "dataset", [eval_workdir / "transcripts" / "demo-0a1b2c3d.json"],
                      EvaluateConfig(num_references=1), eval_workdir / "samples" / "main" / "references.json")
    with Server(eval_workdir, tmp_path_factory.mktemp("api") / "server.log", "--preload", "base", *LIMITS) as srv:
        yield srv


def post(server, data=None, files=None, headers=None, timeout=300):
    return httpx.post(f"{server.url}/synthesize", data=data, files=files, headers=headers, timeout=timeout)


def wav_of(response) -> tuple[np.ndarray, int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    return sf.read(io.BytesIO(response.content), dtype="float32")


def test_spec_health_and_models(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/synthesize", "/models", "/references", "/health"} <= set(spec["paths"])
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["device"] == "cpu"
    assert health["loaded_models"] == ["base"] and health["loads"] == {"base": 1}  # --preload base
    models = {m["id"]: m for m in httpx.get(f"{server.url}/models").json()}
    assert set(models) == {"base", "main"}
    assert models["main"] == {"id": "main", "kind": "finetuned", "run": "main", "path": "checkpoints/main/export",
                              "loaded": False, "default_references": models["main"]["default_references"]}
    refs = httpx.get(f"{server.url}/references").json()
    assert refs["defaults"]["main"] == models["main"]["default_references"] and len(refs["clips"]) == 5


def test_valid_requests_return_wav_and_each_model_loads_once(server, eval_workdir):  # noqa: F811
    samples, rate = wav_of(post(server, {"text": "Hello there. How are you today?"}))
    assert rate == OUTPUT_SAMPLE_RATE and len(samples) > 0.1 * rate
    form = {"text": "The same words twice.", "model": "main", "reference_id": "demo-0a1b2c3d_0001", "seed": "5"}
    first, second = post(server, form), post(server, form)
    assert first.headers["x-seed"] == "5" and float(first.headers["x-audio-seconds"]) > 0
    assert first.content == second.content  # same seed, text, voice and model: the same bytes
    with open(eval_workdir / "dataset" / "wavs" / "demo-0a1b2c3d_0002.wav", "rb") as clip:
        uploaded = post(server, {"text": "An uploaded voice.", "model": "main"},
                        files={"reference": ("my voice.wav", clip, "audio/wav")})
    wav_of(uploaded)
    health = httpx.get(f"{server.url}/health").json()
    assert health["loads"] == {"base": 1, "main": 1} and health["queue"]["active"] == 0


def _long_reference(tmp_path):
    path = tmp_path / "long.wav"
    write_wav(path, 0.2 * np.sin(np.arange(8000 * 25, dtype=np.float32) * 0.3), 8000)  # 25 s, ~400 kB
    return path


@pytest.mark.parametrize(
    ("data", "upload", "status", "message"),
    [
        ({}, None, 422, "text"),
        ({"text": ""}, None, 422, "text"),
        ({"text": "   ...  "}, None, 400, "nothing to speak"),
        ({"text": "x" * 401}, None, 422, "at most 400 characters"),
        ({"text": "hi", "model": "nope"}, None, 404, "unknown model 'nope'"),
        ({"text": "hi", "model": "../../etc/passwd"}, None, 422, "should match pattern"),
        ({"text": "hi", "reference_id": "../../etc/passwd"}, None, 400, "is not a clip id"),
        ({"text": "hi", "reference_id": "no-such-clip"}, None, 404, "unknown reference clip 'no-such-clip'"),
        ({"text": "hi", "language": "xx"}, None, 400, "language 'xx' is not available"),
        # every XTTS language's front end is installed now (issue 11): a real language XTTS lacks instead
        ({"text": "hi", "language": "sv"}, None, 400, "use one of en"),
        ({"text": "hi", "temperature": "0"}, None, 422, "temperature"),
        ({"text": "hi", "seed": "-1"}, None, 422, "seed"),
        ({"text": "hi"}, "passwd", 415, "not an accepted audio file"),
        ({"text": "hi"}, "fake.wav", 415, "not audio FFmpeg can read"),
        ({"text": "hi"}, "big.wav", 413, "over the limit of 1048576 bytes"),
        ({"text": "hi"}, "long.wav", 413, "25 s long — send at most 20 s"),
    ],
    ids=["no-text", "empty-text", "nothing-to-say", "text-too-long", "unknown-model", "model-path",
         "reference-path-traversal", "unknown-reference", "unknown-language", "language-xtts-lacks",
         "temperature-zero", "negative-seed", "upload-etc-passwd", "upload-text-as-wav", "upload-too-big",
         "upload-too-long"],
)
def test_bad_input_gets_a_clear_4xx(server, tmp_path, data, upload, status, message):
    files = None
    if upload == "passwd":
        files = {"reference": ("passwd", Path("/etc/passwd").read_bytes(), "application/octet-stream")}
    elif upload == "fake.wav":
        files = {"reference": ("fake.wav", b"RIFF not really a wave file" * 10, "audio/wav")}
    elif upload == "big.wav":
        files = {"reference": ("big.wav", b"\0" * (2 * 2**20), "audio/wav")}
    elif upload == "long.wav":
        files = {"reference": ("long.wav", _long_reference(tmp_path).read_bytes(), "audio/wav")}
    response = post(server, data, files)
    assert response.status_code == status, response.text
    assert message in response.text, response.text


def test_a_silent_upload_is_named_by_its_file_name_not_a_server_path(server, tmp_path):
    silent = tmp_path / "quiet take.wav"
    write_wav(silent, np.zeros(3 * 16000, np.float32), 16000)
    response = post(server, {"text": "hi"}, files={"reference": ("quiet take.wav", silent.read_bytes(), "audio/wav")})
    assert response.status_code == 400, response.text
    message = response.json()["detail"]
    assert message.startswith("reference clip 'quiet take.wav' (the uploaded reference) is 3.00 s long and silent")
    assert "/tmp" not in message and "xttsflow-api-" not in message
    record("hostile API client", "silent reference upload", survived=True)


@pytest.mark.parametrize("multipart", [True, False], ids=["multipart", "urlencoded"])
def test_a_megabyte_of_text_gets_the_documented_422(server, multipart):
    # over the form parser's own 1 MiB part limit, under the body limit (1 MiB upload + 64 KiB)
    text = "x" * 1_100_000
    response = httpx.post(f"{server.url}/synthesize", timeout=120,
                          **({"files": {"text": (None, text)}} if multipart else {"data": {"text": text}}))
    assert response.status_code == 422 and "at most 400 characters" in response.text, response.text[:500]
    record("hostile API client", f"1.1 MB text ({'multipart' if multipart else 'urlencoded'})", survived=True)


def test_a_full_queue_answers_429_before_reading_the_body(server):
    """A refused upload costs the server nothing: the 429 comes while the client has sent only headers."""
    long_text = {"text": " ".join(["A short sentence to keep the one slot busy."] * 9)}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        busy = [pool.submit(post, server, long_text) for _ in range(3)]  # 1 generating + 2 queued: full
        for _ in range(400):
            if httpx.get(f"{server.url}/health").json()["queue"] == {"active": 1, "waiting": 2, "slots": 1,
                                                                     "max_queue": 2}:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the three requests never filled the queue")
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(b"POST /synthesize HTTP/1.1\r\nHost: test\r\nContent-Length: 900000\r\n"
                         b"Content-Type: multipart/form-data; boundary=xx\r\n\r\n")  # and no body at all
            answer = ""
            while not answer.endswith("}") and (chunk := sock.recv(4096)):  # the headers, then the JSON
                answer += chunk.decode()
        assert all(f.result().status_code == 200 for f in busy)
    assert answer.startswith("HTTP/1.1 429"), answer
    assert "server busy: 2 requests queued" in answer and "retry-after: 2" in answer.lower()
    assert httpx.get(f"{server.url}/health").json()["queue"]["waiting"] == 0
    record("hostile API client", "upload into a full queue (headers only)", survived=True)


def test_concurrent_requests_queue_and_overflow_gets_429(server):
    text = {"text": "One sentence. Another sentence. A third one. And a fourth to keep the slot busy."}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post(server, text), range(8)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 429}, [r.text for r in responses if r.status_code not in (200, 429)]
    assert codes.count(200) >= 3 and codes.count(429) >= 1, codes  # 1 generating + 2 queued; the rest refused
    busy = next(r for r in responses if r.status_code == 429)
    assert "server busy" in busy.json()["detail"] and busy.headers["retry-after"] == "2"
    assert httpx.get(f"{server.url}/health").json()["queue"] == {"active": 0, "waiting": 0, "slots": 1,
                                                                 "max_queue": 2}


def test_schemathesis_fuzz_finds_no_server_error(server, tmp_path):
    before = len(server.output(tail=10**9))
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks",
         "not_a_server_error", "--max-examples", "12", "--seed", "7", "--workers", "1", "--no-shrink",
         "--request-timeout", "120", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + server.output()
    assert "passed" in proc.stdout and "ST101" not in proc.stdout
    access = server.output(tail=10**9)[before:]
    assert access.count('"POST /synthesize HTTP/1.1" 200') >= 3, access[-3000:]  # it reached real synthesis
    assert " 500 " not in access


def test_token_is_required_when_set_and_off_loopback(eval_workdir, tmp_path):  # noqa: F811
    refused = subprocess.run([sys.executable, "-m", "xttsflow.cli", "api", "--workdir", str(eval_workdir),
                              "--host", "0.0.0.0", "--port", str(free_port())],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "XTTSFLOW_API_TOKEN": ""})
    assert refused.returncode == 1
    assert "refusing to listen on 0.0.0.0 without a bearer token — set XTTSFLOW_API_TOKEN" in refused.stderr
    srv = Server(eval_workdir, tmp_path / "auth.log", "--device", "cpu", env={"XTTSFLOW_API_TOKEN": TOKEN}).wait()
    try:
        assert httpx.get(f"{srv.url}/health").status_code == 200  # for load balancers: no secrets in it
        assert httpx.get(f"{srv.url}/models").status_code == 401
        wrong = httpx.get(f"{srv.url}/models", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and "bearer token" in wrong.json()["detail"]
        assert post(srv, {"text": "hi"}).status_code == 401
        ok = httpx.get(f"{srv.url}/models", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and {m["id"] for m in ok.json()} == {"base", "main"}
        # the schema and its docs page are behind the token too (issue 13): the page asks a browser for Basic
        for path in ("/openapi.json", "/docs"):
            refused = httpx.get(f"{srv.url}{path}")
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic"), path
            assert httpx.get(f"{srv.url}{path}", auth=("anyone", TOKEN)).status_code == 200, path
        spec = httpx.get(f"{srv.url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert "/synthesize" in spec.json()["paths"]
        # auth schemes are case-insensitive (RFC 9110 11.1): a lowercase `bearer` is the same scheme
        assert httpx.get(f"{srv.url}/models", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        assert httpx.get(f"{srv.url}/health").json()["loads"] == {}  # nothing was synthesised without the token
        record("hostile API client", "no or wrong token (API, schema, docs)", survived=True)
    finally:
        srv.stop()


def test_spec_lists_the_openai_endpoints_and_voices_beside_todays(server):
    paths = set(httpx.get(f"{server.url}/openapi.json").json()["paths"])
    assert {"/v1/audio/speech", "/v1/models", "/v1/models/{model_id}", "/voices"} <= paths
    assert "/" not in paths  # the page is not an API operation (tests/test_browser.py drives it)
