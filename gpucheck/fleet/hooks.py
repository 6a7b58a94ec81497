"""What `check` and `probe` do with a finished report for the cluster: the node_exporter
file (`--prometheus FILE`) and, on an error finding, draining the node (`--drain-on-error`)."""

from __future__ import annotations

import argparse
import sys
import time

from gpucheck.findings import Severity
from gpucheck.io import write_atomic
from gpucheck.report import Report


def write_prometheus(report: Report, path: str) -> None:
    from gpucheck.fleet.prometheus import render_prometheus

    write_atomic(path, render_prometheus(report.to_dict(), time.time()))


def drain_if_failed(report: Report) -> None:
    """Drain this Slurm node when the report has an error finding; one line on stderr."""
    from gpucheck.fleet.slurm import drain_on_error

    errors = [(f.id, f.title) for f in report.findings if f.severity is Severity.ERROR]
    outcome = drain_on_error(errors)
    if outcome is not None:
        print(f"gpucheck: {outcome.message}", file=sys.stderr)


def after_report(report: Report, args: argparse.Namespace) -> None:
    if getattr(args, "prometheus", None):
        write_prometheus(report, args.prometheus)
    if getattr(args, "drain_on_error", False):
        drain_if_failed(report)
