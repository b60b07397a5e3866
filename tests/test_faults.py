"""Faults users meet, each survived and explained: hostile file names through the real workflow."""

from __future__ import annotations

import string

import pytest
from conftest import snakemake, write_config

from xttsflow.audio import write_wav
from xttsflow.sources import local_source_id

pytestmark = pytest.mark.slow

#: Every printable ASCII character a file name may hold (all but "/"), in one name.
ALL_ASCII = "".join(c for c in string.printable if c not in "/\t\n\r\x0b\x0c") + ".wav"
HOSTILE_NAMES = [
    "x<h>y.wav",  # a Snakemake 9 path variable
    "take {1}.wav",  # a Snakemake wildcard
    "-rf.wav", "--help.wav",  # names that look like options
    ALL_ASCII,
    "é" * 125 + ".wav",  # 254 bytes of UTF-8: as long as a Linux file name goes (255)
]


def test_hostile_file_names_through_the_workflow(tmp_path, make_speech):
    names = HOSTILE_NAMES
    assert len(names[-1].encode()) == 254
    speech = make_speech(["The lighthouse keeper counted the ships.", "A storm came over the grey sea."], [0.9])
    rec = tmp_path / "recordings"
    rec.mkdir()
    for name in names:
        write_wav(rec / name, speech.samples, speech.sample_rate)
    write_config(tmp_path, {"sources": [{"path": "recordings", "speaker": "ana", "language": "en"}],
                            "until": "segment", "segment": {"min_duration": 1.0, "max_duration": 8.0}})
    dry = snakemake(tmp_path, "--dry-run")
    assert "Undefined pathvar" not in dry.stdout + dry.stderr
    snakemake(tmp_path, "--cores", "2")
    for name in names:
        sid = local_source_id(f"recordings/{name}")
        assert (tmp_path / "segments" / f"{sid}.json").is_file(), name
        assert len(list((tmp_path / "segments" / sid).glob("*.wav"))) == 2, name
    assert not (tmp_path / "pwned").exists() and sorted(p.name for p in rec.iterdir()) == sorted(names)
