"""The report: a snapshot and everything concluded from it, with its verdict and exit code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gpucheck import __version__
from gpucheck.errors import EXIT_FINDINGS, EXIT_OK
from gpucheck.findings import Finding, Severity
from gpucheck.snapshot import Snapshot

REPORT_SCHEMA_VERSION = 1


class ToDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Report:
    snapshot: Snapshot
    findings: tuple[Finding, ...] = ()
    recommendation: ToDict | None = None  # gpucheck.recommend.Recommendation
    bench: tuple[ToDict, ...] | None = None  # gpucheck.bench.BenchResult per device; None: not run
    command: str = "check"
    strict: bool = False
    notes: tuple[str, ...] = ()  # e.g. why the bench was not run

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    @property
    def verdict(self) -> str:
        if self.count(Severity.ERROR):
            return "FAIL"
        if self.count(Severity.WARN):
            return "WARN"
        return "PASS"

    @property
    def exit_code(self) -> int:
        if self.count(Severity.ERROR) or (self.strict and self.count(Severity.WARN)):
            return EXIT_FINDINGS
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "gpucheck", "version": __version__},
            "command": self.command,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "strict": self.strict,
            "summary": {
                s.value: self.count(s) for s in (Severity.ERROR, Severity.WARN, Severity.INFO)
            },
            "findings": [f.to_dict() for f in self.findings],
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "bench": [b.to_dict() for b in self.bench] if self.bench is not None else None,
            "notes": list(self.notes),
            "snapshot": self.snapshot.to_dict(),
        }
