"""Command line: parse flags, run the pipeline, render, map the outcome to an exit code.

    probe -> Snapshot -> diagnose / recommend / bench -> Report -> render

Exit codes (docs/cli.md): 0 pass, 1 error findings (or warnings with --strict),
2 usage or input error, 3 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence

from gpucheck import __version__, proc
from gpucheck.errors import EXIT_INTERNAL, EXIT_USAGE, UsageError
from gpucheck.io import (
    is_output_error,
    load_compat,
    load_snapshot,
    output_kind,
    silence_stdout,
    write_atomic,
)
from gpucheck.report import Report

COMMANDS = ("check", "probe", "recommend", "bench", "bootstrap", "fleet", "compat", "node")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError(f"seconds must be > 0 and at most a week: {text!r}")
    return value


def bench_device(text: str) -> str:
    kind, colon, index = text.partition(":")
    if text == "cpu" or (kind == "cuda" and (not colon or (index.isascii() and index.isdigit()))):
        return text
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")


def f1_gate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text!r}")
    return value


def build_parser() -> Parser:
    parser = Parser(
        prog="gpucheck",
        description="Does the GPU path work here, and if not, exactly what do I run to fix it?",
        epilog="With no command, runs `check`. Exit codes: 0 pass, 1 problems found, "
        "2 usage or input error, 3 internal error. Docs: docs/cli.md",
    )
    parser.add_argument("--version", action="version", version=f"gpucheck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser("check", help="probe, diagnose, recommend and run the smoke benchmark")
    _add_report_options(check)
    _add_bench_options(check)

    probe = sub.add_parser("probe", help="static probe only (no torch import, no benchmark): fast")
    _add_report_options(probe)

    bench = sub.add_parser("bench", help="run the BERT NER fine-tuning smoke benchmark")
    _add_report_options(bench)
    _add_bench_options(bench)

    from gpucheck import bootstrap
    from gpucheck.fleet import cli as fleet_cli
    from gpucheck.node import cli as node_cli
    from gpucheck.recommend import cli as recommend_cli

    for name, module, text in (
        (
            "recommend",
            recommend_cli,
            "the PyTorch build to install, here or on a described machine",
        ),
        ("bootstrap", bootstrap, "create or fix an environment with the recommended build"),
        ("fleet", fleet_cli, "one report for many nodes: drift, outliers, missing (docs/fleet.md)"),
        ("node", node_cli, "every GPU together: P2P, NVLink, NCCL, bandwidth, matmul (fast)"),
    ):
        p = sub.add_parser(name, help=text)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    from gpucheck.compat import verify as compat_verify

    compat = sub.add_parser("compat", help="check the compatibility table (docs/recommend.md)")
    actions = compat.add_subparsers(dest="compat_command", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify", help="compare the table with the PyTorch wheel index and PyPI (online)"
    )
    compat_verify.add_arguments(verify)
    verify.set_defaults(run=compat_verify.run)
    return parser


def _add_report_options(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("output")
    out.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the JSON report to FILE (or stdout when FILE is omitted)",
    )
    out.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write a markdown report to FILE (or stdout)",
    )
    out.add_argument("--junit", metavar="FILE", help="write a JUnit XML report to FILE")
    out.add_argument(
        "--prometheus", metavar="FILE", help="write node_exporter textfile metrics to FILE"
    )
    out.add_argument("--dump-snapshot", metavar="FILE", help="write the raw snapshot to FILE")
    out.add_argument(
        "--drain-on-error",
        action="store_true",
        help="Slurm: drain this node when an error finding is present (docs/fleet.md)",
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no terminal report")
    out.add_argument(
        "--no-color", action="store_true", help="plain text (NO_COLOR is honoured too)"
    )
    run = p.add_argument_group("run")
    run.add_argument(
        "--from-snapshot",
        metavar="FILE",
        help="run everything on a recorded snapshot instead of probing this machine",
    )
    run.add_argument(
        "--compat", metavar="FILE", help="use this compatibility table instead of the built-in one"
    )
    run.add_argument("--strict", action="store_true", help="warnings fail the run too (exit 1)")
    run.add_argument(
        "--require-gpu", action="store_true", help="no usable GPU is an error (exit 1)"
    )
    run.add_argument(
        "--torch-timeout",
        type=positive_seconds,
        default=60.0,
        metavar="S",
        help="limit for the torch child process (default 60)",
    )
    run.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="S",
        help="limit for the whole run; children get what is left",
    )


def _add_bench_options(p: argparse.ArgumentParser) -> None:
    b = p.add_argument_group("benchmark")
    b.add_argument("--no-bench", action="store_true", help="skip the smoke benchmark")
    b.add_argument(
        "--bench-preset",
        choices=("tiny", "small", "base", "large"),
        help="model size (default: tiny on CPU, base on a GPU)",
    )
    b.add_argument(
        "--bench-timeout",
        type=positive_seconds,
        default=600.0,
        metavar="S",
        help="limit for each benchmark child (default 600)",
    )
    b.add_argument(
        "--bench-device",
        type=bench_device,
        metavar="DEV",
        help="cpu, cuda or cuda:N (default: every GPU in turn)",
    )
    # passed through to `python -m finetune` (same names and meaning; docs/finetune.md)
    b.add_argument(
        "--model",
        metavar="DIR_OR_ID",
        help="a BERT checkpoint folder or a hub id from the local cache (or fetched with "
        "--download)",
    )
    b.add_argument("--train-file", metavar="FILE", help="CoNLL training file (with --eval-file)")
    b.add_argument("--eval-file", metavar="FILE", help="CoNLL evaluation file (with --train-file)")
    b.add_argument(
        "--f1-gate",
        type=f1_gate,
        metavar="X",
        help="require dev F1 >= X (default: the preset's gate on the built-in corpus; with your "
        "data or checkpoint, only that training worked)",
    )
    b.add_argument(
        "--download",
        action="store_true",
        help="let the benchmark download --model and hf: data from the Hugging Face hub",
    )
    from gpucheck.node.launch import add_arguments as add_launch_arguments

    add_launch_arguments(b)  # torchrun's flags: several GPUs or nodes as one DDP run


class Deadline:
    """The whole-run time budget: each child gets what is left, never more than its own limit."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def limit(self, own: float) -> float:
        if self.end is None:
            return own
        return max(0.5, min(own, self.end - time.monotonic()))


def run_report_command(args: argparse.Namespace) -> int:
    _check_outputs(args)
    _check_bench_inputs(args)
    table = load_compat(args.compat)  # a bad table is a usage error: say so before probing
    deadline = Deadline(args.timeout)
    # `check` inspects torch; `bench` needs the CUDA devices from it unless it was told which.
    wants_torch = args.command == "check" or (args.command == "bench" and not args.bench_device)
    if args.from_snapshot is not None:
        snapshot = load_snapshot(args.from_snapshot)
    else:
        from gpucheck.probe import collect
        from gpucheck.probe.fallbacks import SMI_TIMEOUT

        snapshot = collect(
            torch_child=wants_torch,
            torch_timeout=deadline.limit(args.torch_timeout),
            nvml_timeout=deadline.limit(10.0),
            smi_timeout=deadline.limit(SMI_TIMEOUT),
        )
    if args.dump_snapshot:
        write_atomic(args.dump_snapshot, snapshot.to_json() + "\n")

    from gpucheck.diagnose import diagnose, sort_findings
    from gpucheck.recommend import recommend, recommend_findings

    findings = diagnose(snapshot, require_gpu=args.require_gpu)
    if args.command == "check" and args.from_snapshot is None:
        from gpucheck.node.measure import host_findings  # 2+ GPUs: NCCL env, ACS, NVLink

        findings += host_findings(snapshot)
    recommendation = recommend(snapshot, table=table)
    findings += recommend_findings(snapshot, recommendation, already={f.id for f in findings})
    bench, notes = None, []
    if args.command in ("check", "bench") and not args.no_bench:
        from gpucheck import bench as bench_mod
        from gpucheck.node import bench_glue as node_bench

        if args.from_snapshot is not None:
            notes.append("smoke benchmark not run: the snapshot was recorded on another run")
        elif (
            args.require_gpu
            and not args.bench_device
            and bench_mod.bench_devices(snapshot) == ["cpu"]
        ):
            notes.append("smoke benchmark not run: --require-gpu and no usable GPU")
        else:
            bench = tuple(
                bench_mod.run_benches(
                    snapshot,
                    preset=args.bench_preset,
                    device=args.bench_device,
                    timeout=deadline.limit(args.bench_timeout),
                    deadline=deadline.end,  # bounds the sum over every GPU, not each run
                    launch=node_bench.options(args),
                    extra_args=bench_mod.user_args(args),
                )
            )
            # a PCIe link judged under load replaces the idle snapshot's GC308 for that GPU
            findings = bench_mod.merge(findings, bench_mod.bench_findings(bench))
    report = Report(
        snapshot=snapshot,
        findings=tuple(sort_findings(findings)),
        recommendation=recommendation,
        bench=bench,
        command=args.command,
        strict=args.strict,
        notes=tuple(notes),
    )
    emit(report, args)
    return report.exit_code


def _check_bench_inputs(args: argparse.Namespace) -> None:
    """The benchmark's own data files are checked before any probing (exit 2, one line)."""
    if args.command not in ("check", "bench") or args.no_bench:
        return
    for flag in ("train_file", "eval_file"):
        path = getattr(args, flag)
        if path is None or path.startswith("hf:"):
            continue
        if not os.path.isfile(path):
            raise UsageError(f"--{flag.replace('_', '-')} {path}: no such file")
    if (args.train_file is None) != (args.eval_file is None) and not (
        args.eval_file is None and args.train_file.startswith("hf:")
    ):
        raise UsageError("give --train-file and --eval-file together")


OUTPUT_FLAGS = ("json", "markdown", "junit", "dump_snapshot", "prometheus")


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output path is checked before any work: a bad one costs nothing, writes nothing."""
    to_stdout = [flag for flag in ("json", "markdown") if getattr(args, flag) == "-"]
    if len(to_stdout) > 1:
        raise UsageError("--json and --markdown cannot both go to stdout; give one of them a FILE")
    files = []
    for flag in OUTPUT_FLAGS:
        path = getattr(args, flag, None)
        if path is None or path == "-":
            continue
        if not path:
            raise UsageError(f"--{flag.replace('_', '-')}: the file name is empty")
        if output_kind(path) == "replace":
            files.append(os.path.realpath(path))
    if len(set(files)) != len(files):
        raise UsageError("two outputs name the same file")


def emit(report: Report, args: argparse.Namespace) -> None:
    from gpucheck.render import render_json, render_junit, render_markdown

    stdout_taken = False
    for flag, render in (("json", render_json), ("markdown", render_markdown)):
        target = getattr(args, flag)
        if target == "-":
            sys.stdout.write(render(report))
            stdout_taken = True
        elif target:
            write_atomic(target, render(report))
    if args.junit:
        write_atomic(args.junit, render_junit(report))
    if not stdout_taken and not args.quiet:
        from gpucheck.render.console import make_console, render_console

        render_console(report, make_console(color=False if args.no_color else None))
    from gpucheck.fleet.hooks import after_report  # --prometheus, --drain-on-error

    after_report(report, args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "check")
    restore = proc.install_signal_handlers()
    try:
        args = build_parser().parse_args(argv)
        if args.command in ("recommend", "bootstrap", "fleet", "compat", "node"):
            code = args.run(args)
        else:
            code = run_report_command(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not after we return
        return code
    except UsageError as exc:
        print(f"gpucheck: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the children are ended
        code = proc.exit_code(exc)
        print(f"gpucheck: interrupted ({proc.signal_name(exc)})", file=sys.stderr)
        return code
    except BrokenPipeError:  # `gpucheck ... | head -1`: the reader has what it wanted
        silence_stdout()
        return 0
    except SystemExit as exc:
        if isinstance(exc.__context__, BrokenPipeError):  # rich's own broken-pipe exit(1)
            silence_stdout()
            return 0
        raise
    except OSError as exc:
        if not is_output_error(exc):
            return _internal_error(exc)
        silence_stdout()
        print(f"gpucheck: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        return _internal_error(exc)
    finally:
        proc.kill_all()  # nothing we started outlives us
        restore()


def _internal_error(exc: BaseException) -> int:
    """A bug in gpucheck: say so, and how to report it."""
    if os.environ.get("GPUCHECK_DEBUG"):
        traceback.print_exception(exc)
    print(
        f"gpucheck: internal error: {type(exc).__name__}: {exc}\n"
        "This is a bug in gpucheck. Please report it with the output of "
        "`GPUCHECK_DEBUG=1 gpucheck probe --dump-snapshot snapshot.json` attached.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL
