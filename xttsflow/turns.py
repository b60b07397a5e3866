"""Cut a segment that holds two voices at the change, keeping the target's part (the dataset stage).

The segmenter cuts at pauses, not at voices, so an interview answer can share a segment with the host's
question; the speaker screen's 1.6 s windows find such a segment and would reject it whole. Here every word
of its transcript (Whisper's word timestamps) is scored by a window centred on it, each run of words in the
target's voice is cut out in the pauses around it, and a piece is kept only if it passes the
same screen as a whole segment: clip similarity and every window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A cut needs at least this much silence between two words: Whisper's word times are ~0.1 s off, so a
#: cut in a shorter gap could clip a word (the run then loses its edge word instead).
MIN_CUT_GAP_S = 0.2
#: A cut lies at most this far outside the run's outer words: Whisper's word ends are that close, and
#: beyond them may be the other voice's words, which the transcript often leaves out.
EDGE_PAD_S = 0.3


@dataclass(frozen=True)
class Piece:
    """One run of the target's words: where to cut (seconds in the segment), its words and its score."""

    start: float
    end: float
    words: tuple[dict, ...]
    similarity: float

    @property
    def text(self) -> str:
        return "".join(w["word"] for w in self.words).strip()


def word_runs(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(first, last) word index of each maximal run of words at or above `threshold`."""
    runs, first = [], None
    for i, above in enumerate(list(similarity >= threshold) + [False]):
        if above and first is None:
            first = i
        elif not above and first is not None:
            runs.append((first, i - 1))
            first = None
    return runs


def cut_points(words: list[dict], first: int, last: int, duration: float) -> tuple[int, int, float, float] | None:
    """The run [first, last] shrunk to edges with a pause of MIN_CUT_GAP_S outside them, and the cut times:
    in the middle of that pause, at most EDGE_PAD_S from the word (the transcript may skip the other
    voice's words, so what lies beyond the run's outer words is unknown); None if no word is left."""
    def cut_before(i: int) -> float | None:  # None: the pause before word i is too short to cut in
        start = float(words[i]["start"])
        if i == 0:
            return max(0.0, start - EDGE_PAD_S)
        end = float(words[i - 1]["end"])
        return max((end + start) / 2, start - EDGE_PAD_S) if start - end >= MIN_CUT_GAP_S else None

    def cut_after(i: int) -> float | None:
        end = float(words[i]["end"])
        if i == len(words) - 1:
            return min(duration, end + EDGE_PAD_S)
        start = float(words[i + 1]["start"])
        return min((end + start) / 2, end + EDGE_PAD_S) if start - end >= MIN_CUT_GAP_S else None

    while first <= last and cut_before(first) is None:
        first += 1
    while last >= first and cut_after(last) is None:
        last -= 1
    if first > last:
        return None
    return first, last, cut_before(first), cut_after(last)


def target_pieces(samples: np.ndarray, rate: int, words: list[dict], target: np.ndarray, *, window_threshold: float,
                  clip_threshold: float, windows_below: int, min_duration: float, device: str = "auto") -> list[Piece]:
    """The pieces of one segment in the target's voice (`target`: its unit embedding) that pass the speaker
    screen on their own and last at least `min_duration`."""
    from .speaker import embed_prepared, embed_windows_at, prepare

    words = [w for w in words if w.get("start") is not None and w.get("end") is not None]
    if len(words) < 2:
        return []
    duration = samples.size / rate
    centres = [(float(w["start"]) + float(w["end"])) / 2 for w in words]
    similarity = embed_windows_at(samples, rate, centres, device) @ target
    candidates = []
    for first, last in word_runs(similarity, window_threshold):
        cut = cut_points(words, first, last, duration)
        if cut is not None and cut[3] - cut[2] >= min_duration:
            candidates.append(cut)
    if not candidates:
        return []
    cut_wavs = [prepare(samples[round(a * rate):round(b * rate)], rate) for _, _, a, b in candidates]
    embeddings, partials, owner = embed_prepared(cut_wavs, device)
    pieces = []
    for k, (first, last, start, end) in enumerate(candidates):
        whole = float(embeddings[k] @ target)
        below = int((partials[owner == k] @ target < window_threshold).sum())
        if whole >= clip_threshold and below < windows_below:
            pieces.append(Piece(start, end, tuple(words[first:last + 1]), round(whole, 4)))
    return pieces
