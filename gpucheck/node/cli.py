"""`gpucheck node`: the fast whole-node check (no fine-tuning) for a Slurm HealthCheckProgram,
a prolog or a CI gate: static probe + GPU health rules, then every GPU together in one child
(P2P, NVLink topology, NCCL all_reduce, host<->device bandwidth, matmul), judged as GC6xx.

Budget: Slurm kills a HealthCheckProgram after 60 s, so the defaults keep the whole command
under that on an 8-GPU node: probe (NVML, no torch child) then the node child with 40 s.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from gpucheck.errors import UsageError
from gpucheck.node.figures import FiguresError, NodeFigures
from gpucheck.report import Report

NODE_TIMEOUT_S = 40.0


@dataclass(frozen=True)
class NodeReport(Report):
    """A Report with the node figures it was judged on (the "node" key of the JSON)."""

    node: NodeFigures | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["node"] = self.node.to_dict() if self.node is not None else None
        return d


def add_arguments(p: argparse.ArgumentParser) -> None:
    from gpucheck.cli import _add_report_options, positive_seconds

    _add_report_options(p)
    g = p.add_argument_group("node")
    g.add_argument(
        "--node-timeout",
        type=positive_seconds,
        default=NODE_TIMEOUT_S,
        metavar="S",
        help=f"limit for the interconnect child (default {NODE_TIMEOUT_S:g})",
    )
    g.add_argument(
        "--thorough",
        action="store_true",
        help="larger messages and copies (all_reduce up to 256 MiB): slower, steadier figures",
    )
    g.add_argument("--figures", metavar="FILE", help="also write the measured node figures to FILE")
    g.add_argument(
        "--from-figures", metavar="FILE", help="judge recorded node figures instead of measuring"
    )


def load_figures(path: str) -> NodeFigures:
    from gpucheck.io import read_text

    try:
        return NodeFigures.from_dict(json.loads(read_text(path, "node figures")))
    except ValueError as exc:  # JSONDecodeError and FiguresError both
        raise UsageError(f"node figures {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from gpucheck import cli
    from gpucheck.diagnose import diagnose, sort_findings
    from gpucheck.io import write_atomic
    from gpucheck.node import judge
    from gpucheck.node.measure import collect_figures

    cli._check_outputs(args)
    deadline = cli.Deadline(args.timeout)
    recorded = load_figures(args.from_figures) if args.from_figures else None
    if args.from_snapshot is not None:
        snapshot = cli.load_snapshot(args.from_snapshot)
    else:
        from gpucheck.probe import collect

        snapshot = collect(torch_child=False, nvml_timeout=deadline.limit(10.0))
    if args.dump_snapshot:
        write_atomic(args.dump_snapshot, snapshot.to_json() + "\n")
    notes = []
    if recorded is not None:
        figures = recorded
        notes.append(f"node figures read from {args.from_figures}, not measured")
    else:
        figures = collect_figures(
            timeout=deadline.limit(args.node_timeout),
            nvml_timeout=deadline.limit(10.0),
            fast=not args.thorough,
            in_container=bool(snapshot.system.container),
        )
    if args.figures:
        write_atomic(args.figures, json.dumps(figures.to_dict(), indent=1) + "\n")
    findings = diagnose(snapshot, require_gpu=args.require_gpu) + judge.judge(figures)
    report = NodeReport(
        snapshot=snapshot,
        findings=tuple(sort_findings(findings)),
        command="node",
        strict=args.strict,
        notes=tuple(notes),
        node=figures,
    )
    cli.emit(report, args)
    return report.exit_code


__all__ = ["FiguresError", "NodeReport", "add_arguments", "run"]
