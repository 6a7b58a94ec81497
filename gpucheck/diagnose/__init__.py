"""diagnose(snapshot) -> findings: pure rules over a snapshot, no I/O.

Each rule is a small function registered with `@rule`; it looks at the snapshot and yields
zero or more `Finding`s. The rule modules are imported below so that they register.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gpucheck.findings import Finding, Severity
from gpucheck.snapshot import Snapshot

Rule = Callable[[Snapshot], Iterable[Finding]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


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


# Rule modules register themselves on import.
from gpucheck.diagnose import rules_driver, rules_health, rules_system, rules_torch  # noqa: E402,F401
