"""Findings: what diagnose concludes from a snapshot, each with a stable id and a fix."""

from __future__ import annotations

from dataclasses import dataclass

from gpucheck.plain import StrEnum, to_plain


class Severity(StrEnum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.OK: 0, Severity.INFO: 1, Severity.WARN: 2, Severity.ERROR: 3}


@dataclass(frozen=True)
class Finding:
    id: str  # stable, documented in docs/findings.md, e.g. "GC101"
    severity: Severity
    title: str  # one line, what is wrong
    evidence: tuple[str, ...] = ()  # the facts from the snapshot that led here
    fix: str | None = None  # what to do; a command where one exists
    gpu: int | None = None  # the GPU index it concerns, when it concerns one

    def to_dict(self) -> dict:
        return to_plain(self)
