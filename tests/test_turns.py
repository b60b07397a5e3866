"""A segment that holds two voices (an interview question and its answer, no pause long enough to cut at):
the dataset keeps the target's part, cut at the change (xttsflow.turns), instead of dropping it whole.

Real audio, real Whisper word timestamps (bundled tiny.en), real Resemblyzer embeddings: the target is
LJSpeech, the other voice espeak-ng."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
from test_transcribe import TINY_EN, make_source

from xttsflow.atomic import read_json, write_json
from xttsflow.dataset import DatasetConfig, SourceFiles, build_dataset
from xttsflow.demo import DEMO_SENTENCES
from xttsflow.speaker import embed_source
from xttsflow.transcribe import transcribe_source
from xttsflow.turns import cut_points, word_runs

SOURCE = "talk-00000001"
PAUSE_S = 0.6  # between the question and the answer: under segment.min_silence_ms' default would keep them one
MIXED_AT = 100.0  # where the mixed segment lies in the (notional) recording


def words(*spans: tuple[float, float]) -> list[dict]:
    return [{"word": f" w{i}", "start": a, "end": b} for i, (a, b) in enumerate(spans)]


def test_word_runs_are_the_maximal_runs_at_or_above_the_threshold():
    sims = np.array([0.5, 0.8, 0.9, 0.6, 0.7, 0.7, 0.2])
    assert word_runs(sims, 0.7) == [(1, 2), (4, 5)]
    assert word_runs(np.array([0.9, 0.9]), 0.7) == [(0, 1)]
    assert word_runs(np.array([0.1, 0.2]), 0.7) == []


def test_cuts_lie_in_pauses_near_the_words_and_never_inside_a_short_gap():
    ws = words((0.0, 0.5), (0.55, 1.0), (2.0, 2.4), (2.45, 3.0), (3.1, 3.5))
    # word 1 has no 0.2 s pause before it (0.05 s): the run starts at word 2, cut 0.3 s before it (in a 1 s pause)
    assert cut_points(ws, 1, 4, 4.0) == (2, 4, pytest.approx(1.7), pytest.approx(3.8))
    # no pause on either side inside the run: nothing can be cut out without clipping a word
    assert cut_points(ws, 1, 3, 4.0) is None
    # the run ends the transcript: EDGE_PAD_S after its last word, not the segment's end (unheard words may follow)
    assert cut_points(words((0.2, 0.6), (0.9, 1.4)), 0, 1, 9.0) == (0, 1, 0.0, pytest.approx(1.7))
    # in the middle of a pause, at most EDGE_PAD_S from the word
    assert cut_points(words((0.0, 0.5), (1.0, 1.5), (3.0, 3.5)), 1, 1, 4.0) == (
        1, 1, pytest.approx(0.75), pytest.approx(1.8))


@pytest.fixture(scope="module")
def interview(tmp_path_factory, ljspeech_dir, make_speech):
    """A source of four clean target clips and one segment with the host's question then the target's answer,
    transcribed (word timestamps) and embedded for real."""
    root = tmp_path_factory.mktemp("turns")
    lj = [sf.read(p, dtype="float32") for p in sorted((ljspeech_dir / "unlabeled").glob("*.wav"))[:5]]
    question = make_speech([DEMO_SENTENCES[0]], [])
    assert question.sample_rate == lj[4][1]
    rate = question.sample_rate
    mixed = np.concatenate([question.samples, np.zeros(round(PAUSE_S * rate), np.float32), lj[4][0]])
    manifest = make_source(root, SOURCE, [*lj[:4], (mixed, rate)])
    info = read_json(manifest)
    seg = info["segments"][4]
    seg.update(start=MIXED_AT, end=MIXED_AT + seg["duration"])
    info["speaker"] = "lj"
    write_json(manifest, info)
    transcribe_source(manifest, root / "segments" / SOURCE, root / "transcripts" / f"{SOURCE}.json", TINY_EN,
                      threads=2)
    embed_source(manifest, root / "segments" / SOURCE, root / "embeddings" / f"{SOURCE}.npz", device="cpu")
    answer_at = (question.samples.size + round(PAUSE_S * rate)) / rate
    return {"root": root, "mixed_id": seg["id"], "question_end": question.samples.size / rate,
            "answer_at": answer_at, "answer_s": lj[4][0].size / rate, "question_text": DEMO_SENTENCES[0]}


def build(interview, name: str, **options) -> tuple[dict, dict]:
    root = interview["root"]
    files = SourceFiles(SOURCE, root / "transcripts" / f"{SOURCE}.json", root / "segments" / f"{SOURCE}.json",
                        root / "embeddings" / f"{SOURCE}.npz")
    stats = build_dataset([files], root / name, DatasetConfig(min_duration=1.0, **options))
    clips = {c["id"]: c for c in json.loads((root / name / "clips.json").read_text())["clips"]}
    return stats, clips


def test_the_targets_answer_is_cut_out_of_a_segment_that_holds_the_question(interview):
    mixed = interview["mixed_id"]
    stats, clips = build(interview, "whole", split_voices=False)
    assert not clips[mixed]["kept"] and "another voice in the segment" in clips[mixed]["reasons"]["speaker"]
    assert stats["pieces_cut"]["clips"] == 0 and stats["clips"] == 4

    stats, clips = build(interview, "split")
    piece = clips[f"{mixed}-part1"]
    print(f"\npiece {piece['start']:.2f}-{piece['end']:.2f} s (answer {MIXED_AT + interview['answer_at']:.2f}-"
          f"{MIXED_AT + interview['answer_at'] + interview['answer_s']:.2f}): {piece['text']!r}")
    assert piece["kept"] and piece["cut_from"] == mixed and stats["clips"] == 5
    assert stats["pieces_cut"] == {"clips": 1, "kept": 1, "kept_s": piece["duration"]}
    # cut in the pause between the voices: nothing of the question, (nearly) all of the answer
    assert MIXED_AT + interview["question_end"] <= piece["start"] <= MIXED_AT + interview["answer_at"]
    assert piece["end"] >= MIXED_AT + interview["answer_at"] + interview["answer_s"] - 0.5
    question_words = {w.strip(".,").lower() for w in interview["question_text"].split() if len(w) > 3}
    assert not question_words & {w.strip(".,").lower() for w in piece["text"].split()}, piece["text"]
    assert piece["scores"]["speaker_similarity"] >= 0.75
    # the segment stays rejected, naming the piece; the piece is a real wav of its own in the dataset
    assert not clips[mixed]["kept"] and f"{mixed}-part1" in clips[mixed]["reasons"]["speaker"]
    wav = interview["root"] / "split" / "wavs" / f"{mixed}-part1.wav"
    assert piece["file"] == str(wav) and sf.info(wav).duration == pytest.approx(piece["duration"], abs=1e-3)
    rows = list(csv.reader((interview["root"] / "split" / "metadata.csv").open(), delimiter="|"))
    assert [r[1] for r in rows if r[0] == f"{mixed}-part1"] == [piece["text"]]
    # every second accounted for once: kept + drops = decoded, the piece's seconds not charged as dropped
    total = stats["accounting"]["total"]
    assert total["kept"] == pytest.approx(stats["seconds"], abs=1e-3)
    assert total["kept"] + sum(total["dropped"].values()) == pytest.approx(total["decoded"], abs=1e-2)
    whole = build(interview, "whole-again", split_voices=False)[0]["accounting"]["total"]
    assert total["transcribed"] == pytest.approx(whole["transcribed"], abs=1e-3)
    assert total["dropped"]["dataset: speaker"] == pytest.approx(
        whole["dropped"]["dataset: speaker"] - piece["duration"], abs=1e-2)
