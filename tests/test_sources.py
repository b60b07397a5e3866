"""Source ids: deterministic, unique, filesystem-safe, no path traversal, stable under config reordering."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from xttsflow.errors import XttsflowError
from xttsflow.sources import (
    expand_local,
    local_source_id,
    parent_url_id,
    slug,
    source_table,
    url_entry_id,
    url_source_id,
)

SAFE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _rule_constraint(rule: str) -> re.Pattern:
    """The `source` wildcard constraint a rule in rules/ingest.smk declares (so the test tracks the rules)."""
    text = (REPO / "rules" / "ingest.smk").read_text()
    block = text.split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]
    return re.compile(re.search(r'source=r"([^"]+)"', block)[1] + r"\Z")


LOCAL_RULE, URL_RULE = _rule_constraint("ingest_local"), _rule_constraint("ingest_url")

NASTY = [
    "recordings/interview.mp3",
    "recordings/Interview.MP3",
    "other/interview.mp3",
    "../../etc/passwd.mp3",
    "/abs/path/with spaces/Ünïcödé – take 2.m4a",
    "a/$(rm -rf ~); `id` | & > <.mp3",
    "日本語の録音.ogg",
    ".mp3",
    "..",
    "x" * 300 + ".wav",
    "url.mp3",
    "URL-abcdef12.mp3",
    "url-1234abcd-x.flac",
    "take [2] {x}.opus",
]


def test_local_ids_are_safe_and_never_escape_their_folder(tmp_path):
    for path in NASTY:
        sid = local_source_id(path)
        assert SAFE.match(sid) and len(sid) <= 60, (path, sid)
        target = (tmp_path / "raw" / f"{sid}.flac").resolve()
        assert target.parent == (tmp_path / "raw").resolve()
        assert LOCAL_RULE.match(sid) and not URL_RULE.match(sid), (path, sid)  # never mistaken for a URL
        assert not sid.startswith("url-")


def test_ids_are_deterministic_across_processes():
    code = "from xttsflow.sources import local_source_id as f, url_source_id as u; print(f('a/b c.mp3'), u('https://x/y'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [local_source_id("a/b c.mp3"), url_source_id("https://x/y")]
    assert local_source_id("a/b c.mp3") == "b-c-" + local_source_id("a/b c.mp3").rsplit("-", 1)[1]


def test_ids_are_unique():
    ids = [local_source_id(p) for p in NASTY]
    assert len(set(ids)) == len(ids)
    rng = random.Random(0)
    names = {f"{rng.choice(['a', 'b'])}/{rng.randrange(10**6)}.mp3" for _ in range(3000)}
    assert len({local_source_id(n) for n in names}) == len(names)
    # Same stem in two folders: the readable part is equal, the hash is not.
    assert local_source_id("x/take.mp3") != local_source_id("y/take.mp3")
    # Spellings of one path are one source.
    assert local_source_id("./rec/a.mp3") == local_source_id("rec/a.mp3") == local_source_id("rec//a.mp3")


def test_url_and_entry_ids():
    url_id = url_source_id("https://www.youtube.com/playlist?list=PL123")
    assert re.fullmatch(r"url-[0-9a-f]{8}", url_id)
    assert url_source_id(" https://www.youtube.com/playlist?list=PL123 ") == url_id
    # YouTube ids are case-sensitive and use '-' and '_': distinct ids stay distinct after the slug.
    entry_ids = ["dQw4w9WgXcQ", "dqw4w9wgxcq", "DQW4W9WGXCQ", "a_b", "a-b", "ep-1", "../../x", "é" * 80]
    ids = [url_entry_id(url_id, e) for e in entry_ids]
    assert len(set(ids)) == len(ids)
    assert url_entry_id(url_id, "ep-1") == f"{url_id}-ep-1"  # readable when nothing was lost
    for sid in ids:
        assert SAFE.match(sid) and URL_RULE.match(sid) and not LOCAL_RULE.match(sid), sid
        assert parent_url_id(sid) == url_id and "/" not in sid and ".." not in sid


def test_slug():
    assert slug("Ünïcödé – Take 2!") == "unicode-take-2"
    assert slug("日本語") == "audio"
    assert slug("-" * 10) == "audio"
    assert len(slug("a" * 100)) == 40


def _recordings(tmp_path: Path) -> Path:
    for name in ["a.mp3", "b.wav", "sub/c.flac", "sub/deeper/d.opus", "notes.txt", "take [2].m4a"]:
        path = tmp_path / "rec" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path / "rec"


def test_expand_local_folder_glob_and_file(tmp_path):
    _recordings(tmp_path)
    assert expand_local("rec", tmp_path) == ["rec/a.mp3", "rec/b.wav", "rec/sub/c.flac", "rec/sub/deeper/d.opus",
                                             "rec/take [2].m4a"]
    assert expand_local("rec/**/*.flac", tmp_path) == ["rec/sub/c.flac"]
    assert expand_local("rec/take [2].m4a", tmp_path) == ["rec/take [2].m4a"]  # a file, not a glob
    assert expand_local("rec/missing.mp3", tmp_path) == ["rec/missing.mp3"]  # fails later, in its own job
    with pytest.raises(XttsflowError, match="matched no"):
        expand_local("rec/*.aiff", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(XttsflowError, match="holds no"):
        expand_local("empty", tmp_path)


def test_source_table_is_stable_under_reordering(tmp_path):
    _recordings(tmp_path)
    entries = [
        {"path": "rec", "speaker": "ana", "language": "pt"},
        {"url": "https://example.org/a", "speaker": "ana"},
        {"url": "https://example.org/b", "speaker": "bob", "language": "en"},
        {"path": "rec/sub/c.flac", "speaker": "ana", "language": "pt"},  # also inside "rec": one source
    ]
    table = source_table({"sources": entries, "default_language": "pt"}, tmp_path)
    assert len(table) == 5 + 2
    for seed in range(5):
        shuffled = entries[:]
        random.Random(seed).shuffle(shuffled)
        assert source_table({"sources": shuffled, "default_language": "pt"}, tmp_path) == table
    # Adding a source never renames another one.
    more = source_table({"sources": [*entries, {"url": "https://example.org/c", "speaker": "c"}]}, tmp_path)
    assert {k: v for k, v in more.items() if k in table} == table
    assert table[url_source_id("https://example.org/a")].language == "pt"  # the default language


def test_source_table_rejects_one_recording_with_two_speakers(tmp_path):
    _recordings(tmp_path)
    with pytest.raises(XttsflowError, match="one speaker and one language"):
        source_table({"sources": [{"path": "rec", "speaker": "ana"},
                                  {"path": "./rec/a.mp3", "speaker": "bob"}]}, tmp_path)
