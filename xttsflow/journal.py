"""A resume journal: finished items appended as JSON lines, so that an interrupted job resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path


class Journal:
    """Finished items by id; trusted only when its first line equals `fingerprint` (the options that made them)."""

    def __init__(self, path: Path, fingerprint: dict):
        self.path, self.fingerprint = path, fingerprint
        self.done: dict[str, dict] = {}
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            try:
                header = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                header = None
            if header == fingerprint:
                for line in lines[1:]:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        break  # the line a kill cut short
                    self.done[entry["id"]] = entry["result"]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.stream.write(json.dumps(fingerprint, sort_keys=True) + "\n")
        for seg_id, result in self.done.items():
            self.stream.write(json.dumps({"id": seg_id, "result": result}) + "\n")
        self.stream.flush()

    def add(self, seg_id: str, result: dict) -> None:
        self.done[seg_id] = result
        self.stream.write(json.dumps({"id": seg_id, "result": result}) + "\n")
        self.stream.flush()

    def close(self, remove: bool) -> None:
        self.stream.close()
        if remove:
            self.path.unlink(missing_ok=True)
