"""A failed job leads with the user's sentence: first in its log entry, alone on the console; traceback in the log."""

from __future__ import annotations

import pytest
from conftest import snakemake, write_config

from xttsflow.errors import XttsflowError
from xttsflow.logs import to_file
from xttsflow.sources import local_source_id


def test_to_file_leads_the_log_with_the_sentence_and_exits_with_it(tmp_path, capsys):
    log = tmp_path / "logs" / "job.log"
    with pytest.raises(SystemExit) as stop, to_file(log):
        print("working on it")
        raise XttsflowError("segment: source x: holds no audio — replace the file")
    assert stop.value.code == "segment: source x: holds no audio — replace the file"  # printed alone, exit 1
    lines = log.read_text().splitlines()
    assert lines[0] == "working on it"
    assert lines[1].endswith("ERROR xttsflow: segment: source x: holds no audio — replace the file")
    assert lines[2] == "Traceback (most recent call last):" and lines[-1].startswith("xttsflow.errors.XttsflowError")
    assert capsys.readouterr() == ("", "")  # nothing of the job reached the console but the exit message


def test_a_bug_still_shows_its_traceback(tmp_path):
    with pytest.raises(ZeroDivisionError), to_file(tmp_path / "job.log"):
        1 / 0  # noqa: B018
    assert "ERROR xttsflow: job failed\nTraceback" in (tmp_path / "job.log").read_text()


@pytest.mark.slow
def test_failed_job_prints_one_line_not_a_traceback(tmp_path):
    """A real run on a text file posing as an mp3: the job's own console output is the one sentence."""
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "notes.mp3").write_text("these are my notes, not audio\n")
    write_config(tmp_path, {"sources": [{"path": "recordings", "speaker": "ana", "language": "en"}],
                            "until": "ingest", "on_source_error": "stop"})
    proc = snakemake(tmp_path, "--cores", "1", check=False)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0
    source = local_source_id("recordings/notes.mp3")
    # Between Snakemake's job header and its RuleException: only the sentence (it was 6 traceback lines).
    job = console.split("resources: tmpdir", 1)[1].split("RuleException", 1)[0].splitlines()[1:]
    assert len(job) == 1 and "Traceback" not in console, console
    sentence = job[0]
    assert sentence.startswith(f"ingest: source {source}: recordings/notes.mp3 is not audio (ffprobe: ")
    assert sentence.endswith(" — replace the file or remove it from sources") and console.count(sentence) == 1
    log = (tmp_path / "logs" / "ingest" / f"{source}.log").read_text().splitlines()
    assert log[0].endswith(f"ERROR xttsflow: {sentence}") and log[1] == "Traceback (most recent call last):"
