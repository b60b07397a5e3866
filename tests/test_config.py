"""A bad config stops the run before any job starts, with a message that names the key."""

import pytest
from conftest import snakemake, write_config

from xttsflow.config import check_config
from xttsflow.errors import XttsflowError

GOOD_SOURCE = {"path": "rec.wav", "speaker": "ana", "language": "pt"}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"sources": [GOOD_SOURCE], "segmnet": {}}, "segmnet"),
        ({"sources": [GOOD_SOURCE], "segment": {"min_duration": -5}}, "min_duration"),
        ({"sources": [GOOD_SOURCE], "segment": {"min_duration": 12, "max_duration": 8}}, "segment.min_duration"),
        ({"sources": [GOOD_SOURCE], "ingest": {"audio_quality": "320k"}}, "audio_quality"),
        ({"sources": [{"path": "a.wav", "speaker": "../etc"}]}, "speaker"),
        ({"sources": [{"path": "a.wav", "url": "https://x.org/v", "speaker": "ana"}]}, "oneOf"),
        ({"sources": []}, "sources"),
    ],
    ids=["unknown-key", "negative-duration", "min-above-max", "bad-enum", "unsafe-speaker", "url-and-path",
         "no-sources"],
)
def test_bad_config_stops_before_any_job(tmp_path, config, expected):
    (tmp_path / "rec.wav").write_bytes(b"")
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "--cores", "1", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected in output, output
    assert not (tmp_path / "raw").exists() and not (tmp_path / "logs").exists()


def test_dataset_limit_above_xtts_is_refused():
    with pytest.raises(XttsflowError, match="255995 samples"):
        check_config({"dataset": {"min_duration": 3, "max_duration": 14}})


def test_defaults_are_filled_in(tmp_path):
    (tmp_path / "rec.wav").write_bytes(b"")
    write_config(tmp_path, {"sources": [GOOD_SOURCE], "until": "ingest"})
    proc = snakemake(tmp_path, "--dry-run", "--cores", "1")
    assert "ingest" in proc.stdout + proc.stderr
