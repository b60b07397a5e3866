"""The audio-quality screen (issue 10.4): DNSMOS P.835 from the speechmos wheel's ONNX model, and SNR."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import test_dataset
from test_dataset import good_clips, write_source

from xttsflow.audio import read_wav, resample
from xttsflow.dataset import build_dataset
from xttsflow.options import DatasetConfig
from xttsflow.quality import DNSMOS_RATE, WINDOW_S, Dnsmos, score_source, snr_db

SR = 22050
voices = test_dataset.voices  # the fixture, shared with the dataset tests


def _mix(speech: np.ndarray, background: np.ndarray, snr: float) -> np.ndarray:
    """`background` under `speech` at `snr` dB (powers over the whole clip)."""
    bg = np.resize(background, speech.size)
    bg = bg * np.sqrt(np.mean(speech ** 2) / np.mean(bg ** 2) / 10 ** (snr / 10))
    return np.clip(speech + bg, -1, 1).astype(np.float32)


def _music(n: int, sr: int = SR) -> np.ndarray:
    t = np.arange(n) / sr
    chord = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((220.0, 277.2, 329.6, 440.0)))
    return (chord * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)  # a pulsing chord


@pytest.fixture(scope="module")
def lj_clip(ljspeech_dir) -> np.ndarray:
    samples, rate = read_wav(sorted((ljspeech_dir / "wavs").glob("*.wav"))[0])
    assert rate == SR
    return samples


def test_dnsmos_and_snr_tell_clean_speech_from_speech_over_noise_and_music(lj_clip):
    model = Dnsmos()
    noise = np.random.default_rng(5).standard_normal(lj_clip.size).astype(np.float32)
    clean = model(resample(lj_clip, SR, DNSMOS_RATE))
    noisy = model(resample(_mix(lj_clip, noise, 5), SR, DNSMOS_RATE))
    music = model(resample(_mix(lj_clip, _music(lj_clip.size), -6), SR, DNSMOS_RATE))
    assert clean["bak"] >= 3.0 > max(noisy["bak"], music["bak"]), (clean, noisy, music)
    assert clean["ovrl"] > noisy["ovrl"] + 0.8 and clean["ovrl"] > music["ovrl"] + 0.5
    assert all(1.0 <= v <= 5.0 for s in (clean, noisy, music) for v in s.values())
    assert snr_db(lj_clip, SR) > 20 > 12 > snr_db(_mix(lj_clip, noise, 5), SR)


def test_a_clip_shorter_than_the_window_is_scored_on_one_window_of_itself_repeated(lj_clip):
    """Not Microsoft's script's sliding windows over the doubled clip (5 windows for a 7 s clip, 3.6x the
    time; scores within 0.03 on average, 0.2 at most, measured on the messy benchmark's 33 segments)."""
    model = Dnsmos()
    short = resample(lj_clip, SR, DNSMOS_RATE)[: 4 * DNSMOS_RATE]
    window = np.tile(short, 3)[: int(WINDOW_S * DNSMOS_RATE)]
    assert model(short) == model(window)
    assert model(short) != model(np.tile(short, 3))  # the doubled clip's several windows score otherwise


def test_quality_filter_drops_clips_over_noise_and_keeps_clean_ones(tmp_path, voices, lj_clip):
    noise = np.random.default_rng(6).standard_normal(lj_clip.size).astype(np.float32)
    clips = good_clips(voices, 4)
    clips += [{"audio": lj_clip, "text": "Clean read speech."},
              {"audio": _mix(lj_clip, noise, 5), "text": "The same words over street noise."}]
    source = write_source(tmp_path, "q-00000001", clips)
    out = tmp_path / "quality" / "q-00000001.json"
    out.parent.mkdir()
    record = score_source(source.manifest, source.segments_dir, out)
    assert set(record["clips"]) == {f"q-00000001_{k:04d}" for k in range(1, 7)}
    assert json.loads(out.read_text())["stats"]["segments"] == 6
    scored = source.__class__(source.source, source.transcript, source.manifest, source.embeddings, out)
    stats = build_dataset([scored], tmp_path / "dataset", DatasetConfig(min_dnsmos_bak=3.0, speaker_similarity=None))
    rejected = (tmp_path / "dataset" / "rejected.csv").read_text()
    assert "q-00000001_0006" in rejected and "DNSMOS BAK" in rejected
    assert "q-00000001_0005" not in rejected
    assert stats["rejected_by_filter"].get("quality") == sum(
        r["bak"] < 3.0 for r in record["clips"].values()) >= 1
    assert stats["quality"]["bak"] >= 3.0
    assert sf.info(tmp_path / "dataset" / "wavs" / "q-00000001_0005.wav").frames == lj_clip.size


def test_the_quality_job_is_planned_only_when_a_threshold_is_set(tmp_path, make_speech):
    from conftest import planned_jobs, write_config

    from xttsflow.audio import write_wav

    speech = make_speech(["The lighthouse keeper counted the ships."], [])
    write_wav(tmp_path / "recordings" / "take.wav", speech.samples, speech.sample_rate)
    config = {"sources": [{"path": "recordings", "speaker": "ana", "language": "en"}], "until": "dataset"}
    write_config(tmp_path, config)
    assert "quality" not in planned_jobs(tmp_path)
    write_config(tmp_path, {**config, "dataset": {"min_dnsmos_bak": 3.0}})
    assert planned_jobs(tmp_path)["quality"] == 1


def test_text_rate_filter_drops_transcripts_too_long_or_short_for_their_audio(tmp_path, voices):
    clips = good_clips(voices, 10)
    clips[3] = {**clips[3], "text": "Yes."}  # far too little text for its audio
    clips[7] = {**clips[7], "text": " ".join([clips[7]["text"]] * 2)}  # far too much
    source = write_source(tmp_path, "r-00000001", clips)
    build_dataset([source], tmp_path / "off", DatasetConfig(speaker_similarity=None, max_text_tokens=200))
    stats = build_dataset([source], tmp_path / "on", DatasetConfig(speaker_similarity=None, chars_per_second_iqr=1.5))
    rejected = (tmp_path / "on" / "rejected.csv").read_text()
    assert "r-00000001_0004" in rejected and "r-00000001_0008" in rejected and "characters/s outside" in rejected
    assert stats["rejected_by_filter"].get("text_rate") == 2 and stats["clips"] == 8


def test_a_segment_holding_another_voice_is_rejected_by_its_windows(tmp_path, voices):
    """Only the target's voice: a clip whose mean embedding passes but whose 1.6 s windows include another voice."""
    from test_dataset import voice_embedding

    from xttsflow.speaker import write_embeddings

    source = write_source(tmp_path, "w-00000001", good_clips(voices, 6))
    ids = [f"w-00000001_{k:04d}" for k in range(1, 7)]
    embeddings = np.stack([voice_embedding("ana", k) for k in range(1, 7)])
    windows, owner = [], []
    for i in range(6):
        own = [voice_embedding("ana", 100 * i + j) for j in range(6)]
        if i == 2:  # an interview turn: 3 of its 6 windows are another speaker's
            own[3:] = [voice_embedding("ana", 100 * i + j, outlier=True) for j in range(3)]
        windows += own
        owner += [i] * 6
    write_embeddings(source.embeddings, ids, embeddings, np.stack(windows), np.array(owner))
    stats = build_dataset([source], tmp_path / "on", DatasetConfig())
    rejected = (tmp_path / "on" / "rejected.csv").read_text()
    assert "w-00000001_0003" in rejected and "another voice in the segment" in rejected
    assert stats["clips"] == 5 and stats["rejected_by_filter"] == {"speaker": 1}
    stats = build_dataset([source], tmp_path / "off", DatasetConfig(window_similarity=None))
    assert stats["clips"] == 6
