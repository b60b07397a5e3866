"""The two pages in a real browser (Debian's chromium, headless, driven by Playwright): the API's page at /
speaks base and fine-tuned side by side; the report's dataset page filters, sorts and plays a rejected
clip inside `snakemake --report`'s single HTML file."""

from __future__ import annotations

import base64
import io
import json
import os

import httpx
import numpy as np
import pytest
import soundfile as sf
from apikit import Server, browser, voiced_workdir  # noqa: F401  (fixtures)
from conftest import snakemake, write_config
from evalkit import eval_workdir, tiny_models  # noqa: F401  (fixtures)
from test_dataset import SR, good_clips, voices, write_source  # noqa: F401  (fixture)

from xttsflow import OUTPUT_SAMPLE_RATE
from xttsflow.sources import local_source_id

TOKEN = "a-browser-token-of-enough-length"
LIMITS = ["--max-new-tokens", "6", "--device", "cpu", "--stream-chunk-codes", "2"]
TIMEOUT_MS = 300_000
# The bytes behind an audio element's blob: URL, as the page's own fetch sees them.
BLOB_BYTES = """async (src) => {
  const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
  let s = ""; for (const x of bytes) s += String.fromCharCode(x); return btoa(s);
}"""


@pytest.fixture(scope="module")
def server(voiced_workdir, tmp_path_factory):  # noqa: F811
    with Server(voiced_workdir, tmp_path_factory.mktemp("page") / "server.log", "--preload", "main", *LIMITS) as srv:
        yield srv


@pytest.fixture
def page(browser):  # noqa: F811
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def _speak_on_page(page, text: str) -> list[dict]:
    """Type `text`, click Speak, wait for both panels; each panel's model, voice, status and WAV bytes."""
    page.wait_for_selector("#go:enabled", timeout=60_000)
    page.fill("#text", text)
    page.click("#go")
    page.wait_for_function("() => [...document.querySelectorAll('.panel')].every(p => "
                           "['done', 'error'].includes(p.dataset.state))", timeout=TIMEOUT_MS)
    panels = []
    for panel in page.locator(".panel").all():
        audio = panel.locator("audio")
        if panel.get_attribute("data-state") == "done":
            page.wait_for_function("a => a.readyState >= 2", arg=audio.element_handle(), timeout=60_000)
        panels.append({
            "state": panel.get_attribute("data-state"), "status": panel.locator(".status").inner_text(),
            "model": panel.locator(".model").input_value(), "voice": panel.locator(".voice").input_value(),
            "duration": audio.evaluate("a => a.duration"),
            "wav": base64.b64decode(page.evaluate(BLOB_BYTES, audio.get_attribute("src")))
            if audio.get_attribute("src") else b""})
    return panels


def test_page_speaks_base_and_finetuned_side_by_side(server, page):
    page.goto(f"{server.url}/")
    text = "The keeper lit the lamp. Ships saw it."
    panels = _speak_on_page(page, text)
    assert [(p["model"], p["voice"], p["state"]) for p in panels] == [("base", "demo", "done"),
                                                                      ("main", "demo", "done")]
    for panel in panels:
        samples, rate = sf.read(io.BytesIO(panel["wav"]), dtype="float32")  # the element's source is a WAV
        assert panel["wav"][:4] == b"RIFF" and rate == OUTPUT_SAMPLE_RATE
        assert panel["duration"] == pytest.approx(len(samples) / rate, abs=0.01)  # and the browser decoded it
        assert "s of audio in" in panel["status"] and "voice demo" in panel["status"]
        api = httpx.post(f"{server.url}/v1/audio/speech", timeout=300, json={
            "model": panel["model"], "voice": "demo", "input": text, "response_format": "wav", "language": "en",
            "seed": 1234, "speed": 1})
        assert np.array_equal(sf.read(io.BytesIO(api.content), dtype="float32")[0], samples)  # what the API says
    assert not np.array_equal(*(sf.read(io.BytesIO(p["wav"]))[0] for p in panels))  # two models, two outputs


def test_page_streams_and_keeps_the_result_playable(server, page):
    page.goto(f"{server.url}/")
    page.wait_for_selector("#go:enabled", timeout=60_000)
    page.check("#stream")
    panels = _speak_on_page(page, "One sentence streams. Then another one.")
    for panel in panels:
        assert panel["state"] == "done" and "first audio after" in panel["status"], panel["status"]
        samples, rate = sf.read(io.BytesIO(panel["wav"]))  # the page rebuilt a WAV from the streamed PCM
        assert rate == OUTPUT_SAMPLE_RATE and panel["duration"] == pytest.approx(len(samples) / rate, abs=0.01)


def test_page_shows_errors(server, page):
    page.goto(f"{server.url}/")
    page.wait_for_selector("#go:enabled", timeout=60_000)
    page.fill("#language", "xx")
    page.click("#go")
    page.wait_for_selector("#panel-a[data-state=error]", timeout=TIMEOUT_MS)
    assert "language 'xx' is not available" in page.inner_text("#panel-a .status")


def test_page_needs_the_token_like_the_api(voiced_workdir, browser, tmp_path):  # noqa: F811
    srv = Server(voiced_workdir, tmp_path / "auth.log", *LIMITS, env={"XTTSFLOW_API_TOKEN": TOKEN}).wait()
    try:
        from playwright.sync_api import Error

        for credentials in (None, {"username": "me", "password": "not-the-token"}):
            context = browser.new_context(http_credentials=credentials)
            response = context.request.get(f"{srv.url}/")  # what the server answers: a Basic challenge
            assert response.status == 401 and response.headers["www-authenticate"].startswith("Basic")
            assert "log in with any user name and the token" in response.text()
            if credentials is None:  # the browser asks, headless nobody answers: no page
                with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
                    context.new_page().goto(f"{srv.url}/")
            else:  # a wrong token: the server's 401, not the page
                shown = context.new_page()
                assert shown.goto(f"{srv.url}/").status == 401 and not shown.locator("#go").count()
            context.close()
        # What a person does at the browser's login prompt: the token as password; the page's own requests
        # (GET /voices, POST /v1/audio/speech) then carry it too.
        context = browser.new_context(http_credentials={"username": "me", "password": TOKEN})
        page = context.new_page()
        assert page.goto(f"{srv.url}/").status == 200
        panels = _speak_on_page(page, "Hello there.")
        assert [p["state"] for p in panels] == ["done", "done"]
        context.close()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, voices):  # noqa: F811
    """`until: dataset` on hand-made upstream files (as the earlier stages leave them): the dataset and review
    rules run, then `snakemake --report report.html`."""
    root = tmp_path_factory.mktemp("report")
    sid = local_source_id("talk.wav")
    write_config(root, {"sources": [{"path": "talk.wav", "speaker": "ana", "language": "en"}], "until": "dataset"})
    (root / "raw").mkdir()
    sf.write(root / "raw" / f"{sid}.flac", voices["s0"], SR, format="FLAC")
    (root / "raw" / f"{sid}.json").write_text(json.dumps({"source": sid}))
    clips = good_clips(voices, 4) + [{"audio": voices["short"], "text": "Hello there."},
                                     {**good_clips(voices, 1, 1)[0], "avg_logprob": -1.4},
                                     {**good_clips(voices, 1, 2)[0], "avg_logprob": -1.2}]
    write_source(root, sid, clips)
    for stage in ("ingest", "segment", "transcribe", "speaker_embed"):  # each job's status (xttsflow/status.py)
        (root / "status" / stage).mkdir(parents=True, exist_ok=True)
        (root / "status" / stage / f"{sid}.json").write_text(json.dumps({"ok": True, "source": sid, "stage": stage}))
    stamp = 1_700_000_000
    for order, pattern in enumerate(["raw/*", "status/ingest/*", "segments/*/*.wav", "segments/*", "status/segment/*",
                                     "transcripts/*", "embeddings/*", "status/transcribe/*", "status/speaker_embed/*"]):
        for path in root.glob(pattern):
            os.utime(path, (stamp + order * 10, stamp + order * 10))
    # Hand-made upstream files have no Snakemake records: judge by mtime, so only dataset and review run.
    snakemake(root, "--cores", "2", "--rerun-triggers", "mtime")
    snakemake(root, "--report", "report.html", "--rerun-triggers", "mtime")
    return root, sid


@pytest.mark.slow
def test_report_dataset_page_filters_sorts_and_plays_a_rejected_clip(report_run, page):
    root, sid = report_run
    clips = {c["id"]: c for c in json.loads((root / "dataset" / "clips.json").read_text())["clips"]}
    page.goto((root / "report.html").as_uri())  # the single-file report, opened offline
    # The report's menu: "Results" (one category) or the categories themselves, then the category's files.
    menu = page.get_by_role("link", name="Results", exact=True).or_(
        page.get_by_role("link", name="1. Dataset", exact=True))
    menu.first.wait_for(timeout=60_000)
    for name in ("Results", "1. Dataset"):
        for link in page.get_by_role("link", name=name, exact=True).all():
            link.click()
    row = page.locator("tr", has=page.locator("td", has_text="reports/dataset.html"))
    row.locator("a[iconname=eye]").click()
    review = page.frame_locator("iframe")
    review.locator("#filter").select_option("reason:confidence", timeout=60_000)
    visible = review.locator("#clips tbody tr:not([hidden])")
    assert sorted(visible.evaluate_all("rows => rows.map(r => r.id)")) == [f"clip-{sid}_0006", f"clip-{sid}_0007"]
    assert review.locator("#shown").inner_text() == "2 of 7 clips"
    # Sort by confidence (click the heading; the first click puts the highest first).
    review.locator("th[title^='exp(']").click()
    assert visible.evaluate_all("rows => rows.map(r => r.id)") == [f"clip-{sid}_0007", f"clip-{sid}_0006"]
    # Play the rejected clip: the browser loads and decodes its embedded audio, and it plays.
    audio = review.locator(f"#clip-{sid}_0006 audio")
    audio.evaluate("a => a.play()")
    handle = audio.element_handle()
    frame = handle.owner_frame()
    frame.wait_for_function("a => a.readyState >= 3 && a.currentTime > 0.2", arg=handle, timeout=60_000)
    state = audio.evaluate("a => ({ready: a.readyState, duration: a.duration, error: a.error && a.error.code, "
                           "paused: a.paused})")
    assert state["error"] is None and not state["paused"] and state["ready"] >= 3
    assert state["duration"] == pytest.approx(clips[f"{sid}_0006"]["duration"], abs=0.05)
