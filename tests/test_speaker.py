"""Speaker consistency: Resemblyzer embeddings (weights from its wheel) and centroid similarity find the
intruder's segments in a source that mixes two voices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xttsflow.atomic import write_json
from xttsflow.audio import write_wav
from xttsflow.demo import DEMO_SENTENCES
from xttsflow.errors import XttsflowError
from xttsflow.speaker import centroid_similarity, embed_files, embed_source, read_embeddings

THRESHOLD = 0.75
INTRUDER = {"voice": "en-us+f3", "pitch": 90}  # a high female variant next to the default male voice


@pytest.fixture(scope="session")
def mixed_source(tmp_path_factory, make_speech) -> tuple[list[Path], np.ndarray]:
    """Eight clips of one espeak voice with two clips of another voice among them (an interview)."""
    folder = tmp_path_factory.mktemp("mixed")
    paths, intruder = [], []
    for i, text in enumerate(DEMO_SENTENCES[10:20]):
        other = i in (3, 7)
        speech = make_speech([text], [], **(INTRUDER if other else {}))
        paths.append(folder / f"mixed_{i:04d}.wav")
        write_wav(paths[-1], speech.samples, speech.sample_rate)
        intruder.append(other)
    return paths, np.array(intruder)


@pytest.fixture(scope="session")
def mixed_embeddings(mixed_source) -> np.ndarray:
    return embed_files(mixed_source[0])


def test_embeddings_are_unit_vectors(mixed_embeddings):
    assert mixed_embeddings.shape == (10, 256) and mixed_embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(mixed_embeddings, axis=1), 1.0, atol=1e-4)


def test_intruder_segments_fall_below_threshold(mixed_source, mixed_embeddings):
    _, intruder = mixed_source
    similarity = centroid_similarity(mixed_embeddings, THRESHOLD)
    assert similarity.shape == (10,)
    assert np.all(similarity[intruder] < THRESHOLD), similarity
    assert np.all(similarity[~intruder] > 0.85), similarity


def test_ljspeech_speaker_with_an_espeak_intruder(ljspeech_dir, mixed_source):
    """A real voice (LJSpeech) and a synthetic intruder: the clip gap Resemblyzer is known for (~0.5 vs ~0.9)."""
    speaker = sorted((ljspeech_dir / "unlabeled").glob("*.wav"))[:6]
    embeddings = embed_files([*speaker, mixed_source[0][0]])
    similarity = centroid_similarity(embeddings, THRESHOLD)
    assert np.all(similarity[:6] > 0.8) and similarity[6] < 0.65, similarity


def test_refit_without_outliers_separates_better():
    """The first centroid leans towards a large intruder group; the refit without it does not."""
    rng = np.random.default_rng(0)
    speaker = np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.05, (6, 3))
    intruder = np.array([0.0, 1.0, 0.0]) + rng.normal(0, 0.05, (4, 3))
    emb = np.vstack([speaker, intruder])
    naive = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    naive = naive @ (naive.mean(axis=0) / np.linalg.norm(naive.mean(axis=0)))
    refit = centroid_similarity(emb, 0.8)
    assert naive[:6].min() < 0.9 < refit[:6].min()  # the speaker's own clips gain once the intruder is out
    assert refit[6:].max() < naive[6:].min()


def test_silent_rows_and_empty_input():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 0.0]])
    similarity = centroid_similarity(emb, 0.5)
    assert similarity[2] == 0.0 and similarity[:2].min() > 0.9
    assert centroid_similarity(np.zeros((0, 256)), 0.5).shape == (0,)
    with pytest.raises(ValueError):
        centroid_similarity(np.zeros(256), 0.5)


def test_embed_source_writes_ids_and_vectors(tmp_path, mixed_source):
    seg_dir = tmp_path / "segments" / "mix-1"
    seg_dir.mkdir(parents=True)
    segments = []
    for i, path in enumerate(mixed_source[0][:2]):
        (seg_dir / f"mix-1_{i:04d}.wav").write_bytes(path.read_bytes())
        segments.append({"id": f"mix-1_{i:04d}", "file": f"mix-1_{i:04d}.wav", "duration": 4.0})
    write_wav(seg_dir / "mix-1_0002.wav", np.zeros(22050 * 3, np.float32), 22050)  # digital silence
    segments.append({"id": "mix-1_0002", "file": "mix-1_0002.wav", "duration": 3.0})
    (seg_dir / "mix-1_0003.wav").write_bytes(b"not audio")  # corrupt: a zero row, not a failed job
    segments.append({"id": "mix-1_0003", "file": "mix-1_0003.wav", "duration": 3.0})
    write_json(tmp_path / "segments" / "mix-1.json", {"source": "mix-1", "segments": segments})

    embed_source(tmp_path / "segments" / "mix-1.json", seg_dir, tmp_path / "embeddings" / "mix-1.npz")
    ids, emb = read_embeddings(tmp_path / "embeddings" / "mix-1.npz")
    assert ids == ["mix-1_0000", "mix-1_0001", "mix-1_0002", "mix-1_0003"] and emb.shape == (4, 256)
    assert not np.any(emb[2:]) and np.allclose(np.linalg.norm(emb[:2], axis=1), 1.0, atol=1e-4)

    (seg_dir / "mix-1_0001.wav").unlink()
    with pytest.raises(XttsflowError, match=r"missing.*mix-1_0001\.wav"):
        embed_source(tmp_path / "segments" / "mix-1.json", seg_dir, tmp_path / "embeddings" / "mix-1.npz")


def test_batched_embedding_equals_resemblyzers_own(mixed_source):
    """All clips' partials in one LSTM pass give what VoiceEncoder.embed_utterance gives clip by clip."""
    from xttsflow.speaker import _encoder, _load

    paths = mixed_source[0][:3]
    encoder = _encoder("cpu")
    own = np.stack([encoder.embed_utterance(_load(p)) for p in paths])
    assert np.allclose(embed_files(paths, device="cpu"), own, atol=1e-5)
