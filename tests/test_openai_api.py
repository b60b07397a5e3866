"""OpenAI's speech API, named voices and streaming on the real server process (tiny random XTTS checkpoints):
the official `openai` client gets audio of the right rate and length in every format; today's 16 bad-input
rules, the token and the ids hold on /v1/; audio streams as it is generated; a schemathesis fuzz of the
new endpoints finds no 5xx."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from apikit import Server, voiced_workdir  # noqa: F401  (fixture)
from evalkit import eval_workdir, tiny_models  # noqa: F401  (fixtures)

from xttsflow import OUTPUT_SAMPLE_RATE
from xttsflow.audio import decode

TOKEN = "a-test-token-of-enough-length"
# As tests/test_api.py, plus small stream chunks so that one sentence of 6 codes streams in several pieces.
LIMITS = ["--max-new-tokens", "6", "--max-upload-mb", "1", "--max-text-chars", "400", "--max-queue", "2",
          "--max-reference-seconds", "20", "--device", "cpu", "--stream-chunk-codes", "2"]
TEXT = "The lighthouse keeper climbed the stairs. He lit the lamp for the ships."


@pytest.fixture(scope="module")
def server(voiced_workdir, tmp_path_factory):  # noqa: F811
    with Server(voiced_workdir, tmp_path_factory.mktemp("openai") / "server.log", "--preload", "main", *LIMITS) as srv:
        yield srv


def speech(server, timeout=300, headers=None, **body):
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=timeout, headers=headers)


def wav(content: bytes) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(content), dtype="float32")


def test_export_carries_the_named_voice_in_coqui_format(voiced_workdir):  # noqa: F811
    import torch
    from TTS.tts.layers.xtts.xtts_manager import SpeakerManager

    export = voiced_workdir / "checkpoints" / "main" / "export"
    speakers = SpeakerManager(export / "speakers_xtts.pth")  # what coqui's Xtts.load_checkpoint reads
    assert speakers.speaker_names == ["tiny", "demo"]  # the base's entries kept, the dataset's speaker added
    latent, embedding = speakers.speakers["demo"].values()  # Xtts.synthesize(speaker=...) unpacks so
    assert latent.shape == (1, 32, 64) and embedding.shape == (1, 512, 1)  # tiny GPT: 64 channels
    record = json.loads((export / "xttsflow.json").read_text())["voices"]["demo"]
    # The confident clips, longest first, until the tiny config's gpt_cond_len (12 s) is full; never _0004
    # (confidence exp(-1.6) = 0.20 < 0.5) while confident ones remain.
    assert record["clips"] == ["demo-0a1b2c3d_0002", "demo-0a1b2c3d_0001", "demo-0a1b2c3d_0005"]
    assert record["seconds"] >= 12 and record["language"] == "en"
    from xttsflow.inference import Synthesizer

    synth = Synthesizer(export, device="cpu")  # the same clips, cloned at inference time: the same voice
    cloned = synth.voice([voiced_workdir / "dataset" / "wavs" / f"{i}.wav" for i in record["clips"]])
    assert torch.allclose(cloned.gpt_cond_latent, latent, atol=1e-5)
    assert torch.allclose(cloned.speaker_embedding, embedding, atol=1e-5)


def test_openai_client_gets_audio_in_every_format(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused-without-a-server-token", max_retries=0)
    assert {m.id for m in client.models.list().data} == {"base", "main"}
    assert client.models.retrieve("main").owned_by == "xttsflow"
    reference = httpx.post(f"{server.url}/synthesize", data={"text": TEXT, "model": "main", "voice": "demo",
                                                             "seed": "5"}, timeout=300)
    expected, rate = wav(reference.content)
    assert rate == OUTPUT_SAMPLE_RATE and len(expected) > 0.2 * rate
    assert float(reference.headers["x-audio-seconds"]) == pytest.approx(len(expected) / rate, abs=1e-3)
    got = client.audio.speech.create(model="main", voice="demo", input=TEXT, response_format="wav",
                                     extra_body={"seed": 5})
    samples, got_rate = wav(got.content)
    assert got_rate == OUTPUT_SAMPLE_RATE and np.array_equal(samples, expected)  # same request, same audio
    pcm = client.audio.speech.create(model="main", voice="demo", input=TEXT, response_format="pcm",
                                     extra_body={"seed": 5}).content
    assert np.array_equal(np.frombuffer(pcm, "<i2"), np.round(expected * 32768).astype("<i2"))  # the WAV's samples
    seconds = len(expected) / rate
    for fmt, codec in [("flac", "flac"), ("mp3", "mp3"), ("opus", "opus"), ("aac", "aac")]:
        audio = client.audio.speech.create(model="main", voice="demo", input=TEXT, response_format=fmt,
                                           extra_body={"seed": 5}).content
        path = server.log.name + f".{fmt}"
        with open(path, "wb") as f:
            f.write(audio)
        probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", path],
                                          capture_output=True, text=True, check=True).stdout)["streams"][0]
        assert probe["codec_name"] == codec and probe["channels"] == 1, probe
        decoded = decode(path, OUTPUT_SAMPLE_RATE)
        assert abs(len(decoded) / OUTPUT_SAMPLE_RATE - seconds) < 0.12, (fmt, len(decoded), seconds)  # codec padding
        level = np.sqrt(np.mean(decoded**2)) / np.sqrt(np.mean(expected**2))
        if fmt == "flac":
            assert np.abs(decoded - expected).max() < 1e-3  # lossless
        elif fmt == "opus":  # a speech codec: the tiny random model's noise-like audio loses its top band
            assert 0.2 < level < 1.2, level
        else:  # lossy, but the same signal: its level within 25 %
            assert abs(level - 1) < 0.25, (fmt, level)
    # OpenAI's own model and voice names select the fine-tuned model and its speaker.
    aliased = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav",
                                         extra_body={"seed": 5})
    assert np.array_equal(wav(aliased.content)[0], expected)


def test_named_voice_works_without_upload_on_every_model(server):
    voices = {m["model"]: m for m in httpx.get(f"{server.url}/voices").json()["models"]}
    assert voices["main"]["voices"][:2] == ["demo", "tiny"] and voices["main"]["default"] == "demo"
    assert voices["base"]["default"] == "demo" and "demo" in voices["base"]["voices"]
    # On the base model (which does not store it) the voice is cloned from the clips the export recorded.
    base = speech(server, model="base", voice="demo", input="Hello there.", response_format="wav")
    assert base.status_code == 200 and base.headers["x-voice"] == "demo"
    by_clips = httpx.post(f"{server.url}/synthesize", data={
        "text": "Hello there.", "model": "base", "reference_id": ["demo-0a1b2c3d_0002", "demo-0a1b2c3d_0001",
                                                                  "demo-0a1b2c3d_0005"]}, timeout=300)
    assert np.array_equal(wav(base.content)[0], wav(by_clips.content)[0])
    # A stored studio voice and a clip id work as voices too; the voice changes the audio.
    tiny = speech(server, model="main", voice="tiny", input="Hello there.", response_format="wav")
    clip = speech(server, model="main", voice="demo-0a1b2c3d_0003", input="Hello there.", response_format="wav")
    demo = speech(server, model="main", voice="demo", input="Hello there.", response_format="wav")
    assert tiny.status_code == clip.status_code == demo.status_code == 200
    assert not np.array_equal(wav(tiny.content)[0], wav(demo.content)[0])


@pytest.mark.parametrize(
    ("body", "raw", "status", "message"),
    [
        ({}, None, 400, "Missing required parameter: 'input'"),
        ({"input": ""}, None, 400, "input: String should have at least 1 character"),
        ({"input": "   ...  "}, None, 400, "nothing to speak"),
        ({"input": "x" * 401}, None, 400, "at most 400 characters"),
        ({"model": "nope"}, None, 404, "unknown model 'nope'"),
        ({"model": "../../etc/passwd"}, None, 400, "should match pattern"),
        ({"voice": "../../etc/passwd"}, None, 400, "is not a voice id"),
        ({"voice": "no-such-clip"}, None, 404, "unknown voice 'no-such-clip'"),
        ({"language": "xx"}, None, 400, "language 'xx' is not available"),
        # sv: a well-formed code of a language XTTS-v2 does not speak (all 17 of its own have a front end now)
        ({"language": "sv"}, None, 400, "language 'sv' is not available"),
        ({"temperature": 0}, None, 400, "temperature"),
        ({"seed": -1}, None, 400, "seed"),
        ({"voice": "/etc/passwd"}, None, 400, "is not a voice id"),
        (None, "passwd", 400, "could not parse the JSON body"),
        (None, "big", 413, "over the limit of 1048576 bytes"),
        ({"speed": 5}, None, 400, "speed: Input should be less than or equal to 4"),
    ],
    ids=["no-text", "empty-text", "nothing-to-say", "text-too-long", "unknown-model", "model-path",
         "voice-path-traversal", "unknown-voice", "unknown-language", "language-without-frontend",
         "temperature-zero", "negative-seed", "voice-etc-passwd", "body-etc-passwd", "body-too-big",
         "speed-out-of-range"],
)
def test_todays_bad_input_rules_hold_on_the_openai_endpoint(server, body, raw, status, message):
    """tests/test_api.py's 16 cases, as OpenAI's JSON request has them (uploads become the request body)."""
    if raw == "passwd":
        response = httpx.post(f"{server.url}/v1/audio/speech", content=Path("/etc/passwd").read_bytes(),
                              headers={"Content-Type": "application/json"}, timeout=300)
    elif raw == "big":
        response = speech(server, model="main", voice="demo", input="hi", padding="x" * (2 * 2**20))
    else:
        base = {"model": "main", "voice": "demo", "input": "hi", "response_format": "wav"}
        request = {**base, **body} if body else {k: v for k, v in base.items() if k != "input"}
        response = speech(server, **request)
    assert response.status_code == status, response.text
    error = response.json()["error"]  # OpenAI's shape, so its clients raise their usual exceptions
    assert message in error["message"], error
    assert error["type"] == "invalid_request_error" and set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"instructions": "Speak cheerfully."}, "instructions", "XTTS takes no instructions"),
        ({"response_format": "ogg"}, "response_format", "Input should be 'mp3', 'opus', 'aac', 'flac', 'wav'"),
        ({"stream_format": "sse", "response_format": "mp3"}, "stream_format", "needs response_format wav or pcm"),
        ({"stream": True}, "stream", "Unrecognized request argument supplied: stream"),
        ({"voice": {"id": "demo", "name": "x"}}, "voice.name", "Unrecognized request argument supplied: voice.name"),
    ],
    ids=["instructions", "unknown-format", "sse-mp3", "unknown-field", "voice-object-extra"],
)
def test_unsupported_fields_get_openai_style_400(server, body, param, message):
    response = speech(server, **{"model": "main", "voice": "demo", "input": "hi", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"], error


def test_the_openai_client_raises_its_own_errors(server):
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="unknown model 'nope'"):
        client.audio.speech.create(model="nope", voice="demo", input="hi")
    with pytest.raises(openai.BadRequestError, match="XTTS takes no instructions"):
        client.audio.speech.create(model="main", voice="demo", input="hi", instructions="whisper")
    voice_object = client.audio.speech.create(model="main", voice={"id": "demo"}, input="hi", response_format="wav")
    assert wav(voice_object.content)[1] == OUTPUT_SAMPLE_RATE


def _timed_stream(server, path, **kwargs) -> tuple[list[tuple[float, bytes]], httpx.Response]:
    began, chunks = time.perf_counter(), []
    with httpx.stream("POST", f"{server.url}{path}", timeout=300, **kwargs) as response:
        for chunk in response.iter_raw():
            chunks.append((time.perf_counter() - began, chunk))
    return chunks, response


def test_audio_streams_as_it_is_generated_on_both_endpoints(server):
    whole = speech(server, model="main", voice="demo", input=TEXT, response_format="wav", seed=9)
    expected, rate = wav(whole.content)
    chunks, response = _timed_stream(server, "/v1/audio/speech", json={
        "model": "main", "voice": "demo", "input": TEXT, "response_format": "wav", "stream_format": "audio",
        "seed": 9})
    assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
    body = b"".join(c for _, c in chunks)
    samples, got_rate = wav(body)  # a WAV of "unknown" length: decoders read it to the end
    assert got_rate == rate == OUTPUT_SAMPLE_RATE
    # coqui's streaming decoder cross-fades chunks: the same length as the whole file within a few %
    assert abs(len(samples) - len(expected)) < 0.1 * len(expected), (len(samples), len(expected))
    audio_chunks = [t for t, c in chunks[1:] if c]  # chunks[0] is the header, sent at once
    assert len(audio_chunks) >= 4, len(audio_chunks)  # 2 sentences of 6 codes, 2 codes a chunk
    assert audio_chunks[0] < 0.6 * chunks[-1][0], chunks  # the first audio came long before the last

    pcm_chunks, pcm = _timed_stream(server, "/v1/audio/speech", json={
        "model": "main", "voice": "demo", "input": TEXT, "response_format": "pcm", "stream_format": "audio",
        "seed": 9})
    assert pcm.headers["content-type"] == "audio/pcm" and pcm.headers["x-sample-rate"] == "24000"
    assert len(b"".join(c for _, c in pcm_chunks)) == 2 * len(samples)

    events = []
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=300, json={
            "model": "main", "voice": "demo", "input": TEXT, "response_format": "pcm", "stream_format": "sse",
            "seed": 9}) as sse:
        assert sse.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in sse.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[-1:]] == ["speech.audio.done"] and len(events) >= 5
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert len(audio) == 2 * len(samples) and events[-1]["audio_seconds"] == pytest.approx(len(samples) / rate, 1e-3)

    form, response = _timed_stream(server, "/synthesize", data={"text": TEXT, "model": "main", "voice": "demo",
                                                                "stream": "true", "seed": "9"})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert np.array_equal(wav(b"".join(c for _, c in form))[0], samples)  # the same stream on our endpoint
    assert httpx.get(f"{server.url}/health").json()["queue"]["active"] == 0


def test_a_client_that_leaves_mid_stream_frees_the_slot(server):
    long_text = " ".join(f"Sentence number {i} of a long reading." for i in range(9))  # under 400 characters
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=300, json={
            "model": "main", "voice": "demo", "input": long_text, "response_format": "pcm",
            "stream_format": "audio"}) as response:
        assert response.status_code == 200
        first = next(response.iter_raw())
        assert first and httpx.get(f"{server.url}/health").json()["queue"]["active"] == 1
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.url}/health").json()["queue"]["active"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(f"{server.url}/health").json()["queue"] == {"active": 0, "waiting": 0, "slots": 1,
                                                                 "max_queue": 2}
    assert speech(server, model="main", voice="demo", input="Still here.", response_format="wav").status_code == 200
    assert "generation failed" not in server.output(tail=10**6)


def test_streams_share_the_queue_and_overflow_gets_429(server):
    def one(_):
        with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=300, json={
                "model": "main", "voice": "demo", "input": TEXT + " " + TEXT, "response_format": "pcm",
                "stream_format": "audio"}) as response:
            body = response.read()
            return response.status_code, response.headers.get("retry-after"), body

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    codes = sorted(code for code, _, _ in results)
    assert set(codes) <= {200, 429} and codes.count(200) >= 3 and codes.count(429) >= 1, codes
    busy = next(r for r in results if r[0] == 429)
    assert busy[1] == "2" and b"server busy" in busy[2] and b'"error"' in busy[2]  # OpenAI's shape: clients retry
    assert httpx.get(f"{server.url}/health").json()["queue"]["active"] == 0


def test_token_rules_hold_for_the_new_endpoints(voiced_workdir, tmp_path):  # noqa: F811
    srv = Server(voiced_workdir, tmp_path / "auth.log", "--device", "cpu", "--max-new-tokens", "6",
                 env={"XTTSFLOW_API_TOKEN": TOKEN}).wait()
    try:
        for method, path in [("GET", "/v1/models"), ("GET", "/v1/models/main"), ("GET", "/voices"), ("GET", "/"),
                             ("GET", "/app.js"), ("POST", "/v1/audio/speech")]:
            response = httpx.request(method, f"{srv.url}{path}", json={} if method == "POST" else None)
            assert response.status_code == 401, (path, response.text)
        denied = speech(srv, model="main", voice="demo", input="hi", headers={"Authorization": "Bearer wrong"})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{srv.url}/").headers["www-authenticate"].startswith("Basic")  # a browser asks for it
        ok = speech(srv, model="main", voice="demo", input="hi", response_format="wav",
                    headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        basic = "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
        assert httpx.get(f"{srv.url}/voices", headers={"Authorization": basic}).status_code == 200
        wrong = "Basic " + base64.b64encode(b"anyone:wrong").decode()
        assert httpx.get(f"{srv.url}/", headers={"Authorization": wrong}).status_code == 401

        import openai

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="wrong", max_retries=0).models.list()
        models = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=TOKEN, max_retries=0).models.list()
        assert {m.id for m in models.data} == {"base", "main"}
    finally:
        srv.stop()


def test_schemathesis_fuzz_of_the_new_endpoints_finds_no_server_error(server, tmp_path):
    before = len(server.output(tail=10**9))
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks",
         "not_a_server_error", "--max-examples", "15", "--seed", "7", "--workers", "1", "--no-shrink",
         "--request-timeout", "120", "--report-dir", str(tmp_path), "--include-path-regex", "^/(v1/|voices)"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + server.output()
    assert "passed" in proc.stdout and "ST101" not in proc.stdout
    access = server.output(tail=10**9)[before:]
    assert access.count('"POST /v1/audio/speech HTTP/1.1" 200') >= 3, access[-3000:]  # it reached real synthesis
    assert '"GET /v1/models HTTP/1.1" 200' in access and " 500 " not in access
