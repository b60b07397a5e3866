"""The two pages in a real browser (Debian's chromium, headless, through Selenium and chromium-driver): the
API's page at / speaks base and fine-tuned side by side; the report's dataset page filters and plays a
rejected clip inside `snakemake --report`'s single HTML file."""

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
FETCH_BYTES = """const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => {
  let s = ""; for (const x of new Uint8Array(b)) s += String.fromCharCode(x); done(btoa(s));
}).catch(e => done("error: " + e));"""


def wait_for(driver, condition, timeout=300):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


@pytest.fixture(scope="module")
def server(voiced_workdir, tmp_path_factory):  # noqa: F811
    srv = Server(voiced_workdir, tmp_path_factory.mktemp("page") / "server.log", "--preload", "main", *LIMITS)
    try:
        yield srv.wait()
    finally:
        srv.stop()


def _speak_on_page(driver, text: str) -> list[dict]:
    """Type `text`, click Speak, wait for both panels; each panel's model, voice, status and WAV bytes."""
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: d.find_element(By.ID, "go").is_enabled())
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "go").click()
    wait_for(driver, lambda d: all(p.get_attribute("data-state") in ("done", "error")
                                   for p in d.find_elements(By.CLASS_NAME, "panel")))
    panels = []
    for panel in driver.find_elements(By.CLASS_NAME, "panel"):
        audio = panel.find_element(By.TAG_NAME, "audio")
        wait_for(driver, lambda d, a=audio: d.execute_script("return arguments[0].readyState", a) >= 2, 60)
        data = driver.execute_async_script(FETCH_BYTES, audio.get_attribute("src"))
        assert not data.startswith("error"), data
        panels.append({
            "state": panel.get_attribute("data-state"), "status": panel.find_element(By.CLASS_NAME, "status").text,
            "model": panel.find_element(By.CLASS_NAME, "model").get_attribute("value"),
            "voice": panel.find_element(By.CLASS_NAME, "voice").get_attribute("value"),
            "duration": driver.execute_script("return arguments[0].duration", audio),
            "wav": base64.b64decode(data)})
    return panels


def test_page_speaks_base_and_finetuned_side_by_side(server, browser):  # noqa: F811
    browser.get(f"{server.url}/")
    text = "The keeper lit the lamp. Ships saw it."
    panels = _speak_on_page(browser, text)
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


def test_page_streams_and_keeps_the_result_playable(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/")
    wait_for(browser, lambda d: d.find_element(By.ID, "go").is_enabled())
    browser.find_element(By.ID, "stream").click()
    panels = _speak_on_page(browser, "One sentence streams. Then another one.")
    for panel in panels:
        assert panel["state"] == "done" and "first audio after" in panel["status"], panel["status"]
        samples, rate = sf.read(io.BytesIO(panel["wav"]))  # the page rebuilt a WAV from the streamed PCM
        assert rate == OUTPUT_SAMPLE_RATE and panel["duration"] == pytest.approx(len(samples) / rate, abs=0.01)


def test_page_errors_are_shown_not_swallowed(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/")
    wait_for(browser, lambda d: d.find_element(By.ID, "go").is_enabled())
    browser.execute_script("document.getElementById('language').value = 'ja'")
    browser.find_element(By.ID, "go").click()
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#panel-a").get_attribute("data-state") == "error")
    assert "language 'ja' is not available" in browser.find_element(By.CSS_SELECTOR, "#panel-a .status").text


def test_page_needs_the_token_like_the_api(voiced_workdir, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By


    srv = Server(voiced_workdir, tmp_path / "auth.log", *LIMITS, env={"XTTSFLOW_API_TOKEN": TOKEN}).wait()
    try:
        browser.get(f"{srv.url}/health")  # the one URL without the token: from there, ask for the API
        for path in ("/voices", "/v1/models"):
            status = browser.execute_async_script(
                "const done = arguments[1]; fetch(arguments[0]).then(async r => done([r.status, "
                "r.headers.get('www-authenticate'), await r.text()]))", path)
            assert status[0] == 401 and status[1] == "Bearer" and "bearer token" in status[2], (path, status)
        # The page answers with a Basic challenge (tests/test_openai_api.py checks the 401): the browser asks
        # for the token and, headless, gets no page.
        browser.get(f"{srv.url}/")
        assert not browser.find_elements(By.ID, "go") and "Listen" not in browser.title
        # What a person does at the browser's login prompt: Basic credentials, sent with every request after.
        basic = base64.b64encode(f"me:{TOKEN}".encode()).decode()
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {basic}"}})
        try:
            browser.get(f"{srv.url}/")
            panels = _speak_on_page(browser, "Hello there.")
            assert [p["state"] for p in panels] == ["done", "done"]
        finally:
            browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
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
    stamp = 1_700_000_000
    for order, pattern in enumerate(["raw/*", "segments/*/*.wav", "segments/*", "transcripts/*", "embeddings/*"]):
        for path in root.glob(pattern):
            os.utime(path, (stamp + order * 10, stamp + order * 10))
    # Hand-made upstream files have no Snakemake records: judge by mtime, so only dataset and review run.
    snakemake(root, "--cores", "2", "--rerun-triggers", "mtime")
    snakemake(root, "--report", "report.html", "--rerun-triggers", "mtime")
    return root, sid


@pytest.mark.slow
def test_report_dataset_page_filters_sorts_and_plays_a_rejected_clip(report_run, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    root, sid = report_run
    clips = {c["id"]: c for c in json.loads((root / "dataset" / "clips.json").read_text())["clips"]}
    browser.get((root / "report.html").as_uri())  # the single-file report, opened offline
    # The report's menu: "Results" (one category) or the categories themselves, then the category's files.
    wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, "Results") or d.find_elements(By.LINK_TEXT,
                                                                                           "1. Dataset"), 60)
    for name in ("Results", "1. Dataset"):
        for link in browser.find_elements(By.LINK_TEXT, name):
            link.click()
    row = wait_for(browser, lambda d: d.find_element(By.XPATH, "//td[normalize-space()='reports/dataset.html']/.."))
    row.find_element(By.CSS_SELECTOR, "a[iconname=eye]").click()
    browser.switch_to.frame(wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "iframe"), 60))
    try:
        Select(wait_for(browser, lambda d: d.find_element(By.ID, "filter"), 60)).select_by_value("reason:confidence")
        visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#clips tbody tr") if r.is_displayed()]
        assert {r.get_attribute("id") for r in visible} == {f"clip-{sid}_0006", f"clip-{sid}_0007"}
        assert browser.find_element(By.ID, "shown").text == "2 of 7 clips"
        # Sort by confidence (click the heading; the first click sorts the highest first).
        browser.find_element(By.CSS_SELECTOR, "th[title^='exp(']").click()
        order = [r.get_attribute("id") for r in browser.find_elements(By.CSS_SELECTOR, "#clips tbody tr")
                 if r.is_displayed()]
        assert order == [f"clip-{sid}_0007", f"clip-{sid}_0006"]  # exp(-1.2) before exp(-1.4)
        # Play the rejected clip: the browser loads and decodes its embedded audio.
        audio = browser.find_element(By.CSS_SELECTOR, f"#clip-{sid}_0006 audio")
        browser.execute_script("arguments[0].play()", audio)
        wait_for(browser, lambda d: d.execute_script("return arguments[0].readyState", audio) >= 3, 60)
        state = browser.execute_script("const a = arguments[0]; return {ready: a.readyState, duration: a.duration,"
                                       " error: a.error && a.error.code, paused: a.paused}", audio)
        assert state["error"] is None and not state["paused"]
        assert state["duration"] == pytest.approx(clips[f"{sid}_0006"]["duration"], abs=0.05)
        wait_for(browser, lambda d: d.execute_script("return arguments[0].currentTime", audio) > 0.2, 30)  # it plays
    finally:
        browser.switch_to.default_content()
