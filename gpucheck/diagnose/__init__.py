"""diagnose(snapshot) -> findings: pure rules over a snapshot, no I/O.

Each rule is a small function registered with `@rule`; it looks at the snapshot and yields
zero or more `Finding`s. The rule modules are imported below so that they register.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from gpucheck.findings import Finding, Severity
from gpucheck.snapshot import Snapshot

Rule = Callable[[Snapshot], Iterable[Finding]]
RULES: list[Rule] = []
# Every finding id gpucheck can emit -> where it is emitted. Rules declare theirs with
# `@rule("GC101", "GC102")`; code outside the rules (the bench's GC4xx, the recommendation's
# GC5xx, the run's GC9xx) with `declare`. docs/findings.md must document exactly these.
IDS: dict[str, str] = {}
_ID = re.compile(r"GC\d{3}")


def declare(*ids: str, where: str) -> None:
    """Register finding ids emitted by `where` (a module or function name)."""
    for fid in ids:
        if not _ID.fullmatch(fid):
            raise ValueError(f"not a finding id: {fid!r}")
        IDS.setdefault(fid, where)


def rule(*ids: str) -> Callable[[Rule], Rule]:
    """Register a rule and the finding ids it may emit: `@rule("GC101", "GC102")`."""
    if not ids or not all(isinstance(i, str) for i in ids):
        raise TypeError('a rule declares its finding ids: @rule("GC101", ...)')

    def register(fn: Rule) -> Rule:
        declare(*ids, where=f"{fn.__module__}.{fn.__name__}")
        fn.ids = ids  # type: ignore[attr-defined]
        RULES.append(fn)
        return fn

    return register


def all_ids() -> dict[str, str]:
    """Every declared finding id, after importing every module that emits some."""
    import importlib

    import gpucheck.bench  # noqa: F401 - declares GC4xx
    from gpucheck import recommend

    for name in ("gpucheck.node",):  # optional rooms that declare their own ids on import
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise

    declare(*getattr(recommend, "FINDING_TITLES", {}), where="gpucheck.recommend")
    return dict(IDS)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first, then by id, so that output is stable."""
    return sorted(findings, key=lambda f: (-f.severity.rank, f.id, f.gpu or 0))


def diagnose(snapshot: Snapshot, *, require_gpu: bool = False) -> list[Finding]:
    findings = [f for r in RULES for f in r(snapshot)]
    if require_gpu and not has_usable_gpu(snapshot):
        findings.append(
            Finding(
                id="GC901",
                severity=Severity.ERROR,
                title="No usable GPU, and --require-gpu was given",
                evidence=(usable_gpu_evidence(snapshot),),
                fix="See the other findings for why no GPU is usable.",
            )
        )
    return sort_findings(findings)


def has_usable_gpu(snapshot: Snapshot) -> bool:
    """A GPU that torch can use, or (without the torch child) one that NVML sees healthy."""
    rt = snapshot.torch_runtime
    if rt is not None and rt.status not in ("skipped",):
        return bool(rt.cuda_available and rt.device_count)
    return any(g.error is None for g in snapshot.gpus)


def usable_gpu_evidence(snapshot: Snapshot) -> str:
    rt = snapshot.torch_runtime
    if rt is not None and rt.status != "skipped":
        return f"torch child: status={rt.status}, cuda_available={rt.cuda_available}, devices={rt.device_count}"
    return f"NVML sees {len(snapshot.gpus)} GPU(s)"


declare("GC901", where="gpucheck.diagnose.diagnose")

# Rule modules register themselves on import.
from gpucheck.diagnose import (  # noqa: E402,F401
    rules_child,
    rules_driver,
    rules_health,
    rules_packages,
    rules_system,
    rules_torch,
)
