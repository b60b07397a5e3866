"""The fault-injection suite's tally (tests/test_faults.py records, conftest.py prints it at the end)."""

from __future__ import annotations

from dataclasses import dataclass

FAULTS: list[Fault] = []


@dataclass
class Fault:
    kind: str  # e.g. "disk full", "kill -9", "damaged artifact"
    where: str  # stage, artifact or name
    survived: bool  # the run completed once the fault was gone, no finished work redone wrongly
    lost: bool  # data lost or a half-written output accepted
    named_cause: bool  # the message named the cause (or no message was needed: the fault was absorbed)


def record(kind: str, where: str, survived: bool, lost: bool = False, named_cause: bool = True) -> None:
    FAULTS.append(Fault(kind, where, survived, lost, named_cause))


def summary() -> list[str]:
    kinds = sorted({f.kind for f in FAULTS})
    lines = [f"faults injected: {len(FAULTS)} of {len(kinds)} kinds; survived: {sum(f.survived for f in FAULTS)}; "
             f"data lost: {sum(f.lost for f in FAULTS)}; messages that named the cause: "
             f"{sum(f.named_cause for f in FAULTS)}"]
    for kind in kinds:
        group = [f for f in FAULTS if f.kind == kind]
        lines.append(f"  {kind:<28} {len(group):>3} injected, {sum(f.survived for f in group):>3} survived, "
                     f"{sum(f.lost for f in group)} lost, {sum(f.named_cause for f in group):>3} named the cause")
    return lines
