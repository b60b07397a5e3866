"""The dataset review page from a real dataset build (espeak-ng speech, crafted transcripts with clips
each filter rejects): every clip is on it, playable, with its scores and reasons; the tables count right."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys

import pytest
from test_dataset import good_clips, voices, write_source  # noqa: F401  (fixture)

from xttsflow.dataset import DatasetConfig, build_dataset
from xttsflow.review import build_review, filter_table, group_table


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, voices):  # noqa: F811
    """A dataset of two sources: kept clips, one too short, one unconfident, one flagged, one speaker outlier,
    one whose file is gone; and its review page."""
    root = tmp_path_factory.mktemp("review")
    odd = [{"audio": voices["short"], "text": "Hello there."},
           {**good_clips(voices, 1, 1)[0], "avg_logprob": -1.4},
           {**good_clips(voices, 1, 2)[0], "flags": ["repetition: 3-gram x4"]},
           {**good_clips(voices, 1, 3)[0], "outlier": True},
           {**good_clips(voices, 1, 0)[0], "no_file": True}]
    sources = [write_source(root, "talk-00000001", good_clips(voices, 5) + odd),
               write_source(root, "interview-00000002", good_clips(voices, 3, 1) + odd[1:2], language="en")]
    stats = build_dataset(sources, root / "dataset", DatasetConfig())
    record = build_review(root / "dataset" / "clips.json", root / "dataset" / "stats.json",
                          root / "reports" / "dataset.html", threads=2)
    return root, stats, record, (root / "reports" / "dataset.html").read_text()


def test_clips_json_lists_every_clip_with_scores_and_reasons(reviewed):
    root, stats, _, _ = reviewed
    clips = {c["id"]: c for c in json.loads((root / "dataset" / "clips.json").read_text())["clips"]}
    assert len(clips) == stats["segments_in"] == 14 and sum(c["kept"] for c in clips.values()) == stats["clips"]
    assert {c["id"] for c in clips.values() if c["kept"]} == {
        line.split("|")[0] for line in (root / "dataset" / "metadata.csv").read_text().splitlines()}
    assert set(clips["talk-00000001_0006"]["reasons"]) == {"duration"}
    assert clips["talk-00000001_0007"]["reasons"] == {"confidence": "avg_logprob -1.40 < -1.0"}
    assert clips["talk-00000001_0007"]["scores"]["confidence"] == pytest.approx(0.2466, abs=1e-4)  # exp(-1.4)
    assert set(clips["talk-00000001_0008"]["reasons"]) == {"flags"}
    assert clips["talk-00000001_0009"]["scores"]["speaker_similarity"] < 0.75 < clips["talk-00000001_0001"][
        "scores"]["speaker_similarity"]
    assert set(clips["talk-00000001_0010"]["reasons"]) == {"audio"}
    assert {c["split"] for c in clips.values() if c["kept"]} <= {"train", "val"}


def test_every_clip_is_on_the_page_and_playable(reviewed, tmp_path):
    root, stats, record, page = reviewed
    clips = json.loads((root / "dataset" / "clips.json").read_text())["clips"]
    assert record == {"clips": 14, "kept": stats["clips"], "playable": 13, "bytes": len(page.encode())}
    rows = re.findall(r"<tr class=(kept|rejected) data-status=\w+ data-split='(\w*)' data-reasons='([\w ]*)' "
                      r"id='clip-([\w-]+)'>(.*?)</tr>", page)
    assert [r[3] for r in rows] == [c["id"] for c in clips]
    by_id = {r[3]: r for r in rows}
    assert by_id["talk-00000001_0007"][:3] == ("rejected", "", "confidence")
    assert "avg_logprob -1.40 &lt; -1.0" in by_id["talk-00000001_0007"][4]
    assert "no audio (file missing or unreadable)" in by_id["talk-00000001_0010"][4]
    # A rejected clip's audio: Ogg Opus of the segment file's length.
    uri = re.search(r"src='data:audio/ogg;base64,([^']+)'", by_id["talk-00000001_0006"][4])[1]
    (tmp_path / "clip.ogg").write_bytes(base64.b64decode(uri))
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json",
                                       str(tmp_path / "clip.ogg")], capture_output=True, text=True, check=True).stdout)
    clip = next(c for c in clips if c["id"] == "talk-00000001_0006")
    assert probe["streams"][0]["codec_name"] == "opus"
    assert float(probe["format"]["duration"]) == pytest.approx(clip["duration"], abs=0.05)
    # The transcript and the scores are shown; the filter menu counts each reason.
    assert html.escape(clip["text"]) in by_id["talk-00000001_0006"][4]
    for name, count in stats["rejected_by_filter"].items():
        assert f"<option value='reason:{name}'>rejected for {name} ({count})</option>" in page
    assert page.count("data:image/png;base64,") == 4 and "<script>" in page and "http" not in page.split(
        "<script>")[1]  # plots embedded, the script inline and offline


def test_tables_count_per_source_language_and_filter(reviewed):
    root, stats, _, page = reviewed
    clips = json.loads((root / "dataset" / "clips.json").read_text())["clips"]
    sources = {r["name"]: r for r in group_table(clips, "source")}
    for source, info in stats["sources"].items():
        assert sources[source]["kept"] == info["kept"] and sources[source]["clips"] == info["segments"]
        assert dict(sources[source]["reasons"]) == info["rejected_by_filter"]
    filters = {r["filter"]: r for r in filter_table(clips, ["duration", "confidence", "flags", "speaker", "audio"])}
    assert {k: v["clips"] for k, v in filters.items()} == stats["rejected_by_filter"]
    assert filters["confidence"]["only"] == 2  # both unconfident clips fail nothing else
    languages = group_table(clips, "language")
    assert [(r["name"], r["kept"]) for r in languages] == [("en", stats["clips"])]
    assert "<h2>Per source</h2>" in page and "<h2>Per language</h2>" in page and "languages.en" not in page


def test_cli_writes_the_page_and_names_a_missing_dataset(reviewed, tmp_path):
    root, _, _, _ = reviewed
    out = tmp_path / "page.html"
    proc = subprocess.run([sys.executable, "-m", "xttsflow.cli", "review", "--dataset", str(root / "dataset"), "--out",
                           str(out)], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().count("<tr class=") == 14
    bad = subprocess.run([sys.executable, "-m", "xttsflow.cli", "review", "--dataset", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, cwd=root)
    assert bad.returncode == 1 and "clips.json does not exist — re-run the dataset stage" in bad.stderr


def test_every_second_of_each_source_is_on_the_page_with_a_plot(reviewed):
    root, stats, _, page = reviewed
    section = page.split("<h2>Every second accounted for</h2>")[1].split("<h2>")[0]
    rows = re.findall(r"<tr><td>([^<]+)</td>((?:<td class=num>[^<]*</td>){4})<td>([^<]*)</td></tr>", section)
    shown = {name: [float(v) for v in re.findall(r">([^<]*)</td>", cells)] for name, cells, _ in rows}
    accounting = stats["accounting"]
    assert set(shown) == {"all sources", *accounting["sources"]}
    for name, account in [("all sources", accounting["total"]), *accounting["sources"].items()]:
        expected = [round(account[k] / 60, 2) for k in ("decoded", "in_segments", "transcribed", "kept")]
        assert shown[name] == pytest.approx(expected, abs=0.006), name
        # the drops listed add up, with what was kept, to what was decoded
        dropped = sum(account["dropped"].values())
        assert account["kept"] + dropped == pytest.approx(account["decoded"], abs=0.01), name
    assert "dataset: confidence" in html.unescape(section)  # a drop named by its stage and reason
    plot = re.search(r"<img alt='seconds decoded per source: kept and each drop' src='data:image/png;base64,"
                     r"([A-Za-z0-9+/=]+)'>", page)
    assert plot and base64.b64decode(plot.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
