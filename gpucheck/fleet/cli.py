"""`gpucheck fleet`: one report for many nodes, from report files or from an srun over them.

    gpucheck fleet REPORT... | DIR...   [--nodes HOSTLIST] [--expect FILE] [outputs]
    gpucheck fleet [options] --srun [SRUN ARGS]     (every other option before --srun)

Exit codes: 0 every node passed, 1 a node failed, is missing or its report is unreadable
(with --strict: drift, outliers and warnings too), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator, Sequence

from gpucheck.cli import positive_seconds
from gpucheck.errors import UsageError
from gpucheck.fleet import render
from gpucheck.fleet.aggregate import FleetReport, aggregate
from gpucheck.fleet.hostlist import HostlistError, expand_hostlist
from gpucheck.fleet.summary import DRIFT_FIELDS, NodeSummary, Unreadable, read_report
from gpucheck.fleet.task import ERROR_SUFFIX, NODELIST_FILE
from gpucheck.io import read_text, write_atomic

DEFAULT_NODE_TIMEOUT = 900.0
SRUN_GRACE_S = 120.0  # srun's own start-up and teardown, on top of the node timeout
# "srun: error: n2: task 1: Exited with exit code 3" -> node n2 and what happened
_SRUN_ERROR = re.compile(r"^srun: error: (?P<node>[^\s:]+): tasks? [\d,\-]+: (?P<what>.+)$", re.M)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="*",
        metavar="REPORT|DIR",
        help="node reports (gpucheck check --json), or folders of them (*.json)",
    )
    p.add_argument(
        "--nodes",
        metavar="HOSTLIST",
        help="the nodes expected to report, in Slurm hostlist syntax (gpu[01-16]); "
        "default inside a Slurm job: the job's nodes",
    )
    p.add_argument(
        "--expect",
        metavar="FILE",
        help="golden configuration (JSON): the value(s) every node must have, e.g. "
        '{"driver": "550.54.14", "gpu_count": 8}',
    )
    p.add_argument(
        "--strict", action="store_true", help="drift, outliers and warnings fail the fleet too"
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", nargs="?", const="-", metavar="FILE", help="the fleet JSON report")
    out.add_argument("--markdown", nargs="?", const="-", metavar="FILE", help="markdown report")
    out.add_argument("--junit", metavar="FILE", help="JUnit XML, one test case per node")
    out.add_argument("--quiet", "-q", action="store_true", help="no terminal report")
    out.add_argument("--no-color", action="store_true", help="plain text")
    srun = p.add_argument_group("running it on every node of an allocation")
    srun.add_argument(
        "--out",
        metavar="DIR",
        help="with --srun: the folder (on a filesystem every node sees) for the node reports; "
        "default ./gpucheck-fleet-<UTC time>",
    )
    srun.add_argument(
        "--check-args",
        default="",
        metavar="ARGS",
        help="with --srun: extra arguments for `gpucheck check` on each node ($VARS are "
        "expanded on the node, e.g. '--drain-on-error')",
    )
    srun.add_argument(
        "--node-timeout",
        type=positive_seconds,
        default=DEFAULT_NODE_TIMEOUT,
        metavar="S",
        help=f"with --srun: limit for each node's check (default {DEFAULT_NODE_TIMEOUT:g})",
    )
    srun.add_argument(
        "--srun",
        nargs=argparse.REMAINDER,
        metavar="SRUN_ARGS",
        help="run `gpucheck check --json` on every node with srun (one task per node), then "
        "aggregate; the rest of the command line goes to srun",
    )


def run(args: argparse.Namespace) -> int:
    _check_outputs(args)
    expected = expand_nodes(args.nodes) if args.nodes else None
    expect = load_expect(args.expect) if args.expect else None
    notes: list[str] = []
    if args.srun is not None:
        if args.paths:
            raise UsageError("give report paths or --srun, not both")
        items, expected, notes = run_srun(args, expected)
    else:
        if not args.paths:
            raise UsageError("name report files or folders, or use --srun")
        files = list_reports(args.paths)
        if expected is None:
            from gpucheck.fleet.slurm import job_nodes

            expected = job_nodes(os.environ)
            if expected is not None:
                notes.append(f"expected nodes: those of Slurm job {os.environ.get('SLURM_JOB_ID')}")
        if not files and expected is None:
            raise UsageError("no reports (*.json) in " + " ".join(args.paths))
        items = read_all(files)
    fleet = aggregate(items, expected=expected, expect=expect, strict=args.strict, notes=notes)
    emit(fleet, args)
    return fleet.exit_code


def expand_nodes(text: str) -> list[str]:
    try:
        return expand_hostlist(text)
    except HostlistError as exc:
        raise UsageError(f"--nodes: {exc}") from None


def load_expect(path: str) -> dict:
    try:
        doc = json.loads(read_text(path, "expected configuration"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"--expect {path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not doc:
        raise UsageError(f"--expect {path}: expected a JSON object of field: value")
    unknown = sorted(set(doc) - set(DRIFT_FIELDS))
    if unknown:
        raise UsageError(
            f"--expect {path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(DRIFT_FIELDS)}"
        )
    for key, value in doc.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in values
        ):
            raise UsageError(f"--expect {path}: {key} must be a string, a number or a list of them")
    return doc


def list_reports(paths: Sequence[str]) -> list[str]:
    """Files as given; folders as their *.json and *.error files, sorted. Missing: usage error."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = glob.glob(os.path.join(glob.escape(path), "*.json"))
            found += glob.glob(os.path.join(glob.escape(path), "*" + ERROR_SUFFIX))
            files += sorted(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise UsageError(f"no such report or folder: {path}")
    return list(dict.fromkeys(files))


def read_all(files: Sequence[str]) -> Iterator[NodeSummary | Unreadable]:
    """Summaries one file at a time (a generator: one report in memory at once)."""
    for path in files:
        if path.endswith(ERROR_SUFFIX):
            yield failed_task(path)
        else:
            yield read_report(path)


def failed_task(path: str) -> NodeSummary:
    """A node whose srun task ended without a report (it left <node>.error)."""
    name = os.path.basename(path)[: -len(ERROR_SUFFIX)]
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            why = fh.read(2000).strip().splitlines()[0]
    except (OSError, IndexError):
        why = "the task failed"
    return NodeSummary(source=path, stem=name, problem=why)


def run_srun(
    args: argparse.Namespace, expected: list[str] | None
) -> tuple[list[NodeSummary | Unreadable], list[str] | None, list[str]]:
    from gpucheck.fleet._run import run as run_cmd

    out = os.path.abspath(args.out or time.strftime("gpucheck-fleet-%Y%m%dT%H%M%SZ", time.gmtime()))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: {exc.strerror or exc}") from None
    if list_reports([out]):
        raise UsageError(f"--out {out} already holds reports; give an empty or new folder")
    try:
        check_args = shlex.split(args.check_args)
    except ValueError as exc:
        raise UsageError(f"--check-args: {exc}") from None
    limit = args.node_timeout + SRUN_GRACE_S
    argv = [
        "srun",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=0",
        # Slurm ends the step itself at the limit; our own timeout, a little later, is the backstop
        f"--time={math.ceil(limit / 60)}",
        *args.srun,
        sys.executable,
        "-m",
        "gpucheck.fleet.task",
        "--out",
        out,
        "--timeout",
        f"{args.node_timeout:g}",
        "--",
        *check_args,
    ]
    backstop = limit + SRUN_GRACE_S
    done = run_cmd(argv, timeout=backstop)
    if done.returncode is None and done.error and "could not run" in done.error:
        raise UsageError(f"--srun: {done.error} (is this a Slurm cluster?)")
    notes = [f"reports in {out}"]
    failures = {m["node"]: m["what"].strip() for m in _SRUN_ERROR.finditer(done.stderr or "")}
    if expected is None:
        nodelist_path = os.path.join(out, NODELIST_FILE)
        if os.path.exists(nodelist_path):
            from gpucheck.fleet.slurm import job_nodes

            nodelist = read_text(nodelist_path, "node list").strip()
            expected = job_nodes({**os.environ, "SLURM_JOB_NODELIST": nodelist})
    files = list_reports([out])
    items = list(read_all(files))
    answered = {i.stem for i in items}
    tail = [x for x in (done.stderr or "").splitlines() if x.strip()]
    if done.returncode is None:
        step = f"srun did not finish within {backstop:g} s"
    elif done.returncode != 0:
        step = f"srun exited {done.returncode}" + (f": {tail[-1][:300]}" if tail else "")
    else:
        step = None
    silent = 0  # nodes without a report that srun does not explain by name
    for node in expected or sorted(failures):
        if node in answered:
            continue
        why = failures.get(node) or (f"no report ({step})" if step else None)
        silent += node not in failures
        if why is not None:  # else: srun succeeded without it, so it is missing
            items.append(NodeSummary(source=f"srun:{node}", stem=node, problem=why))
    if step and (silent or not items):  # a node's exit 1 (it failed its check) is no news
        notes.append(step)
    return items, expected, notes


def _check_outputs(args: argparse.Namespace) -> None:
    to_stdout = [flag for flag in ("json", "markdown") if getattr(args, flag) == "-"]
    if len(to_stdout) > 1:
        raise UsageError("--json and --markdown cannot both go to stdout; give one of them a FILE")
    for path in (args.json, args.markdown, args.junit):
        if path and path != "-":
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise UsageError(f"cannot write {path}: folder {folder} does not exist")


def emit(fleet: FleetReport, args: argparse.Namespace) -> None:
    stdout_taken = False
    for flag, fn in (("json", render.render_json), ("markdown", render.render_markdown)):
        target = getattr(args, flag)
        if target == "-":
            sys.stdout.write(fn(fleet))
            stdout_taken = True
        elif target:
            write_atomic(target, fn(fleet))
    if args.junit:
        write_atomic(args.junit, render.render_junit(fleet))
    if not stdout_taken and not args.quiet:
        from gpucheck.render.console import make_console

        render.render_console(fleet, make_console(color=False if args.no_color else None))
