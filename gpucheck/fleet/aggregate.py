"""The fleet report: many node summaries -> one answer (pure; no I/O).

    nodes (a line each), drift (fields where nodes differ from the majority, or from --expect),
    outliers (a GPU > 10% below the fleet median of its model), missing and unreadable nodes.

`aggregate` consumes its input once, so a generator of summaries read one file at a time keeps
memory at a summary per node.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpucheck import __version__
from gpucheck.errors import EXIT_FINDINGS, EXIT_OK
from gpucheck.fleet.summary import DRIFT_FIELDS, NodeSummary, Unreadable

FLEET_SCHEMA_VERSION = 1
# A GPU more than 10% below the fleet median of its model is an outlier: the tolerance
# huggingface/gpu-fryer applies within a node ("within 10% of the node's best"), fleet-wide.
OUTLIER_TOLERANCE = 0.10
OUTLIER_MIN_PEERS = 3  # with fewer GPUs of a model, a median cannot tell which one is slow
DISPLAY_LIMIT = 20  # node names listed per drift entry before "and N more"


@dataclass(frozen=True)
class Node:
    name: str
    summary: NodeSummary
    status: str  # PASS | WARN | FAIL as the fleet judges it (FAIL also for --expect mismatches)
    expect_mismatches: tuple[str, ...] = ()  # "driver 550.54.14 (expected 560.35.03)"


@dataclass(frozen=True)
class Drift:
    field: str
    majority: str | None  # the most common value; None when two values tie for it
    counts: dict[str, int]  # value -> nodes with it ("none" where not recorded)
    nodes: tuple[tuple[str, str], ...]  # (node, value) for the nodes that differ


@dataclass(frozen=True)
class Outlier:
    node: str
    gpu: str
    model: str
    metric: str  # "samples_per_s" | "matmul_tflops"
    value: float
    median: float

    @property
    def ratio(self) -> float:
        return self.value / self.median if self.median else 0.0


@dataclass(frozen=True)
class FleetReport:
    nodes: tuple[Node, ...]
    unreadable: tuple[Unreadable, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()  # nodes that reported but were not expected
    drift: tuple[Drift, ...] = ()
    outliers: tuple[Outlier, ...] = ()
    expected: tuple[str, ...] | None = None
    expect: dict[str, Any] | None = None
    strict: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.status == "FAIL")

    @property
    def verdict(self) -> str:
        if self.failed or self.missing or self.unreadable or not self.nodes:
            return "FAIL"
        if self.drift or self.outliers or any(n.status == "WARN" for n in self.nodes):
            return "WARN"
        return "PASS"

    @property
    def exit_code(self) -> int:
        if self.verdict == "FAIL" or (self.strict and self.verdict == "WARN"):
            return EXIT_FINDINGS
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """The fleet JSON document (docs/schema/fleet.schema.json)."""
        return {
            "schema_version": FLEET_SCHEMA_VERSION,
            "tool": {"name": "gpucheck", "version": __version__},
            "command": "fleet",
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "strict": self.strict,
            "summary": {
                "nodes": len(self.nodes),
                "pass": sum(n.status == "PASS" for n in self.nodes),
                "warn": sum(n.status == "WARN" for n in self.nodes),
                "fail": len(self.failed),
                "unreadable": len(self.unreadable),
                "missing": len(self.missing),
                "expected": len(self.expected) if self.expected is not None else None,
            },
            "nodes": [_node_dict(n) for n in self.nodes],
            "unreadable": [
                {"source": u.source, "name": u.stem, "reason": u.reason} for u in self.unreadable
            ],
            "missing": list(self.missing),
            "extra": list(self.extra),
            "drift": [
                {
                    "field": d.field,
                    "majority": d.majority,
                    "counts": d.counts,
                    "nodes": [{"node": n, "value": v} for n, v in d.nodes],
                }
                for d in self.drift
            ],
            "expect": self.expect,
            "outliers": [
                {
                    "node": o.node,
                    "gpu": o.gpu,
                    "model": o.model,
                    "metric": o.metric,
                    "value": o.value,
                    "median": o.median,
                    "ratio": round(o.ratio, 4),
                }
                for o in self.outliers
            ],
            "notes": list(self.notes),
        }


def _node_dict(n: Node) -> dict[str, Any]:
    s = n.summary
    return {
        "name": n.name,
        "status": n.status,
        "verdict": s.verdict,
        "source": s.source,
        "identity": {
            "hostname": s.hostname,
            "slurm_node_name": s.slurm_node_name,
            "machine_id": s.machine_id,
        },
        "gpus": s.gpu_count,
        "config": dict(s.config),
        "errors": list(s.errors),
        "warnings": list(s.warnings),
        "samples_per_s": s.samples_per_s,
        "expect_mismatches": list(n.expect_mismatches),
        "problem": s.problem,
        "created": s.created,
    }


def aggregate(
    items: Iterable[NodeSummary | Unreadable],
    *,
    expected: Sequence[str] | None = None,
    expect: Mapping[str, Any] | None = None,
    strict: bool = False,
    notes: Sequence[str] = (),
) -> FleetReport:
    """One fleet report from node summaries (consumed once) and what was expected."""
    summaries: list[NodeSummary] = []
    unreadable: list[Unreadable] = []
    for item in items:
        (unreadable if isinstance(item, Unreadable) else summaries).append(item)
    names = assign_names(summaries)
    nodes = []
    for name, s in zip(names, summaries, strict=True):
        mismatches = _expect_mismatches(s, expect) if expect else ()
        status = "FAIL" if mismatches or s.problem else s.verdict
        nodes.append(Node(name, s, status, mismatches))
    nodes.sort(key=lambda n: _natural(n.name))
    missing, extra = _missing(nodes, unreadable, expected)
    return FleetReport(
        nodes=tuple(nodes),
        unreadable=tuple(sorted(unreadable, key=lambda u: _natural(u.stem))),
        missing=missing,
        extra=extra,
        drift=tuple(find_drift(nodes)),
        outliers=tuple(find_outliers(nodes)),
        expected=tuple(expected) if expected is not None else None,
        expect=dict(expect) if expect else None,
        strict=strict,
        notes=tuple(notes),
    )


def assign_names(summaries: Sequence[NodeSummary]) -> list[str]:
    """The report's own name (Slurm node name, else short host name); the file name where the
    report has none or shares it with another report; the path where file names clash too."""
    own = Counter(s.identity_name for s in summaries if s.identity_name)
    names = [
        s.identity_name if s.identity_name and own[s.identity_name] == 1 else s.stem
        for s in summaries
    ]
    taken = Counter(names)
    return [n if taken[n] == 1 else s.source for n, s in zip(names, summaries, strict=True)]


def _expect_mismatches(s: NodeSummary, expect: Mapping[str, Any]) -> tuple[str, ...]:
    if s.problem:
        return ()
    out = []
    for key, want in expect.items():
        allowed = [str(w) for w in (want if isinstance(want, list) else [want])]
        have = s.config.get(key)
        if have not in allowed:
            shown = " or ".join(allowed)
            out.append(f"{key} {have or 'none'} (expected {shown})")
    return tuple(out)


def _missing(
    nodes: Sequence[Node], unreadable: Sequence[Unreadable], expected: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if expected is None:
        return (), ()
    want = set(expected)
    covered: set[str] = {u.stem for u in unreadable}
    extra = []
    for n in nodes:
        hit = n.summary.aliases & want
        covered |= hit
        if not hit:
            extra.append(n.name)
    return tuple(e for e in expected if e not in covered), tuple(extra)


def find_drift(nodes: Sequence[Node]) -> list[Drift]:
    """Per field, the nodes whose value differs from the most common one (all nodes, when
    two values tie for most common: then no node can be called the odd one out)."""
    measured = [n for n in nodes if not n.summary.problem]
    out = []
    for key in DRIFT_FIELDS:
        values = [(n.name, n.summary.config.get(key) or "none") for n in measured]
        counts = Counter(v for _, v in values)
        if len(counts) < 2:
            continue
        (top, top_n), (_, second_n) = counts.most_common(2)
        majority = top if top_n > second_n else None  # the most common value, if one is
        differing = tuple((name, v) for name, v in values if v != majority)
        out.append(Drift(key, majority, dict(counts.most_common()), differing))
    return out


def find_outliers(nodes: Sequence[Node]) -> list[Outlier]:
    """GPUs more than OUTLIER_TOLERANCE below the fleet median of the same model and metric,
    and nodes whose summed samples/s is, among nodes with the same GPU model and count."""
    groups: dict[tuple[str, str], list[tuple[str, str, float]]] = defaultdict(list)
    for n in nodes:
        for f in n.summary.figures:
            if f.model:
                groups[(f.metric, f.model)].append((n.name, f.gpu, f.value))
        s = n.summary
        if s.samples_per_s is not None and s.config.get("gpu_model"):
            shape = f"{s.config.get('gpu_count')}x {s.config['gpu_model']}"
            groups[("node_samples_per_s", shape)].append((n.name, "all", s.samples_per_s))
    out = []
    for (metric, model), rows in sorted(groups.items()):
        if len(rows) < OUTLIER_MIN_PEERS:
            continue
        median = statistics.median(v for _, _, v in rows)
        for node, gpu, value in rows:
            if value < (1 - OUTLIER_TOLERANCE) * median:
                out.append(Outlier(node, gpu, model, metric, value, median))
    return sorted(out, key=lambda o: o.ratio)


def _natural(name: str) -> tuple:
    """gpu2 before gpu10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
