"""segment.denoise (issue 10.4): DeepFilterNet3 before segmentation, on real speech with real noise added.

Unit: LJSpeech speech plus white noise at 5 dB SNR, denoised through the file path the rule uses; the SNR
estimate and DNSMOS BAK (xttsflow/quality.py) must rise, and the length and timeline must stay. Workflow: a
real `snakemake` run up to the segments with `denoise: true`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import REPO, planned_jobs, snakemake, write_config

from xttsflow.audio import resample, write_wav
from xttsflow.denoise import denoise_file
from xttsflow.errors import XttsflowError
from xttsflow.options import SegmentConfig
from xttsflow.quality import DNSMOS_RATE, Dnsmos, snr_db
from xttsflow.segment import segment_file
from xttsflow.sources import local_source_id

RATE = 22050  # LJSpeech's


def _noisy_speech(ljspeech_dir, clips: int, snr_db_target: float = 5.0, pause_s: float = 1.0, seed: int = 0):
    """`clips` LJSpeech recordings joined by pauses, and the same plus white noise at `snr_db_target` dB
    (noise power against the speech's mean power), which fills the pauses too."""
    wavs = sorted((ljspeech_dir / "wavs").glob("*.wav"))[:clips]
    parts = []
    for wav in wavs:
        samples, rate = sf.read(wav, dtype="float32")
        assert rate == RATE
        parts += [samples, np.zeros(int(pause_s * RATE), np.float32)]
    clean = np.concatenate(parts)
    speech_power = np.mean(np.concatenate(parts[::2]) ** 2)
    noise = np.random.default_rng(seed).standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(speech_power / 10 ** (snr_db_target / 10) / np.mean(noise**2))
    return clean, clean + noise


def _bounds(manifest: dict) -> list[tuple[float, float]]:
    return [(seg["start"], seg["end"]) for seg in manifest["segments"]]


def test_denoising_noisy_speech_raises_snr_and_bak_and_keeps_length_and_timeline(ljspeech_dir, tmp_path):
    clean, noisy = _noisy_speech(ljspeech_dir, clips=2)
    raw = tmp_path / "raw.flac"
    sf.write(raw, noisy / max(1.0, np.abs(noisy).max()), RATE, subtype="PCM_16", format="FLAC")
    done = denoise_file(raw, tmp_path / "denoised.flac", source="noisy")
    out, rate = sf.read(tmp_path / "denoised.flac", dtype="float32")
    info = sf.info(tmp_path / "denoised.flac")
    assert (rate, len(out), info.subtype) == (RATE, len(noisy), "PCM_16")
    assert done["real_time_factor"] > 0

    dnsmos = Dnsmos()
    before, after = (dnsmos(resample(x, RATE, DNSMOS_RATE)) for x in (noisy, out))
    snr_before, snr_after = snr_db(noisy, RATE), snr_db(out, RATE)
    # Measured: SNR ~9 -> ~40 dB, BAK ~1.7 -> ~4.0 (clean LJSpeech: ~3.6); the margins leave room for
    # another noise draw but not for a pass-through or a filter that only lowers the level.
    assert snr_after > snr_before + 15, (snr_before, snr_after)
    assert after["bak"] > before["bak"] + 1.5, (before, after)
    assert after["ovrl"] > before["ovrl"] + 0.5, (before, after)

    # The filter's 30 ms lag is removed: the output lines up with the clean speech at lag 0 (+-1 sample of
    # resampling), so segment times mean the same with and without denoising.
    lags = range(-40, 41)
    middle = slice(2000, len(clean) - 2000)
    corr = [np.dot(np.roll(out, -lag)[middle], clean[middle]) for lag in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 1


def test_denoise_refuses_what_is_not_audio_with_a_short_message(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "notes.flac").write_text("these are my notes, not audio\n")
    (raw / "empty.flac").touch()
    for name in ("notes", "empty"):
        with pytest.raises(XttsflowError) as err:
            denoise_file(raw / f"{name}.flac", tmp_path / "out.flac", source=name)
        message = str(err.value)
        # One line that names the source, the file once, what is wrong and which rule makes the file.
        assert message.startswith(f"denoise: source {name}: {raw / name}.flac is damaged (not a FLAC with samples)")
        assert "rule ingest_local" in message and message.count(str(raw)) == 1 and "\n" not in message
    assert not (tmp_path / "out.flac").exists()  # nothing half-written is left


@pytest.mark.slow
def test_workflow_segments_the_denoised_audio(ljspeech_dir, tmp_path):
    work = tmp_path / "work"
    recordings = work / "recordings"
    recordings.mkdir(parents=True)
    clean, noisy = _noisy_speech(ljspeech_dir, clips=3)
    sf.write(recordings / "noisy.wav", noisy / max(1.0, np.abs(noisy).max()), RATE, subtype="PCM_16")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(sources=[{"path": "recordings/noisy.wav", "speaker": "lj", "language": "en"}], until="segment")
    config["segment"]["denoise"] = True
    write_config(work, config)
    source = local_source_id("recordings/noisy.wav")

    assert planned_jobs(work) == {"ingest_local": 1, "denoise": 1, "segment": 1, "all": 1}
    snakemake(work, "--cores", "1")
    status = json.loads((work / f"status/denoise/{source}.json").read_text())
    assert status["ok"], status
    raw, denoised = sf.info(work / f"raw/{source}.flac"), sf.info(work / f"raw/{source}.denoised.flac")
    assert (denoised.samplerate, denoised.frames) == (raw.samplerate, raw.frames)
    manifest = json.loads((work / f"segments/{source}.json").read_text())
    assert manifest["input"]["path"].endswith(f"raw/{source}.denoised.flac") and manifest["config"]["denoise"]
    # The noise fills every pause, so the silence method cuts the noisy file elsewhere (at its quietest
    # points); the denoised one it cuts where it cuts the clean speech.
    cfg = SegmentConfig(**{k: v for k, v in config["segment"].items() if k != "denoise"})
    cuts = {}
    for name, samples in (("clean", clean), ("noisy", noisy)):
        write_wav(tmp_path / f"{name}.wav", samples, RATE)
        cuts[name] = _bounds(segment_file(tmp_path / f"{name}.wav", tmp_path / name, tmp_path / f"{name}.json",
                                          config=cfg, source=name))
    denoised_cuts = _bounds(manifest)
    def same(a, b):
        return len(a) == len(b) and np.allclose(a, b, atol=0.1)

    assert len(cuts["clean"]) >= 2 and not same(cuts["noisy"], cuts["clean"]), cuts
    assert same(denoised_cuts, cuts["clean"]), (denoised_cuts, cuts)
    assert planned_jobs(work) == {}

    # Switched off, segment reads the raw FLAC again (its input changed) and no denoise job is planned.
    config["segment"]["denoise"] = False
    write_config(work, config)
    assert planned_jobs(work) == {"segment": 1, "all": 1}
    snakemake(work, "--cores", "1")
    manifest = json.loads((work / f"segments/{source}.json").read_text())
    assert manifest["input"]["path"].endswith(f"raw/{source}.flac") and not manifest["config"]["denoise"]
    assert same(_bounds(manifest), cuts["noisy"])  # the plain path: the rule's segments are the noisy ones


def test_segment_cli_denoises_first_and_keeps_the_source_name(ljspeech_dir, tmp_path):
    from xttsflow.segment import main

    _, noisy = _noisy_speech(ljspeech_dir, clips=1)
    sf.write(tmp_path / "talk.flac", noisy / max(1.0, np.abs(noisy).max()), RATE, subtype="PCM_16", format="FLAC")
    main([str(tmp_path / "talk.flac"), str(tmp_path / "segs"), str(tmp_path / "segs.json"), "--denoise"])
    manifest = json.loads((tmp_path / "segs.json").read_text())
    assert manifest["input"]["path"] == str(tmp_path / "talk.denoised.flac") and manifest["config"]["denoise"]
    assert manifest["source"] == "talk" and [s["id"] for s in manifest["segments"]] == ["talk_0001"]
    assert sf.info(tmp_path / "talk.denoised.flac").frames == len(noisy)
