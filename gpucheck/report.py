"""The report: a snapshot and everything concluded from it, with its verdict and exit code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gpucheck import __version__
from gpucheck.errors import EXIT_FINDINGS, EXIT_OK
from gpucheck.findings import Finding, Severity
from gpucheck.plain import StrEnum, to_plain
from gpucheck.snapshot import Snapshot

if TYPE_CHECKING:  # the document's types; gpucheck.schema resolves them to build the schema
    from gpucheck.bench import BenchResult
    from gpucheck.recommend.model import Recommendation

REPORT_SCHEMA_VERSION = 1


class ToDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


class Command(StrEnum):
    """The commands that write a report."""

    CHECK = "check"
    PROBE = "probe"
    BENCH = "bench"


@dataclass(frozen=True)
class Tool:
    name: str
    version: str


@dataclass(frozen=True)
class Summary:
    """How many findings of each severity."""

    error: int
    warn: int
    info: int


@dataclass(frozen=True)
class ReportDocument:
    """The JSON report, field for field (docs/schema/report.schema.json is generated from it)."""

    schema_version: int
    tool: Tool
    command: Command
    verdict: Verdict
    exit_code: int
    strict: bool
    summary: Summary
    findings: tuple[Finding, ...]
    recommendation: Recommendation | None
    bench: tuple[BenchResult, ...] | None  # None: the benchmark did not run
    notes: tuple[str, ...]
    snapshot: Snapshot


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
            return Verdict.FAIL.value
        if self.count(Severity.WARN):
            return Verdict.WARN.value
        return Verdict.PASS.value

    @property
    def exit_code(self) -> int:
        if self.count(Severity.ERROR) or (self.strict and self.count(Severity.WARN)):
            return EXIT_FINDINGS
        return EXIT_OK

    def document(self) -> ReportDocument:
        return ReportDocument(
            schema_version=REPORT_SCHEMA_VERSION,
            tool=Tool("gpucheck", __version__),
            command=self.command,  # type: ignore[arg-type]
            verdict=self.verdict,  # type: ignore[arg-type]
            exit_code=self.exit_code,
            strict=self.strict,
            summary=Summary(
                *(self.count(s) for s in (Severity.ERROR, Severity.WARN, Severity.INFO))
            ),
            findings=self.findings,
            recommendation=self.recommendation,  # type: ignore[arg-type]
            bench=self.bench,  # type: ignore[arg-type]
            notes=self.notes,
            snapshot=self.snapshot,
        )

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self.document())
