"""`python -m finetune`: fine-tune BERT for NER and report speed and quality.

Exit codes: 0 the gate passed; 1 the gate failed (low F1, loss not finite or not falling, out
of memory); 2 bad input (flag, file, model folder), one line on stderr; 3 an internal error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence

from finetune.config import PRESETS
from gpucheck.errors import UsageError
from gpucheck.io import write_atomic
from gpucheck.proc import exit_code

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too)
        print(f"finetune: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INPUT)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _window(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _unit_float(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text!r}")
    return value


def add_workload_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that say what to train and where: shared with `python -m finetune.compare`."""
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="tiny",
        help="model shape, data size and recipe (default: tiny)",
    )
    p.add_argument(
        "--model",
        metavar="DIR",
        help="a BERT checkpoint folder (config.json, weights, tokenizer) or a hub id from the "
        "local cache (or fetched with --download)",
    )
    p.add_argument("--train-file", metavar="F", help="CoNLL training file (with --eval-file)")
    p.add_argument("--eval-file", metavar="F", help="CoNLL evaluation file (with --train-file)")
    p.add_argument("--epochs", type=_positive_int, metavar="N")
    p.add_argument("--batch-size", type=_positive_int, metavar="B")
    p.add_argument(
        "--max-length",
        type=_positive_int,
        metavar="L",
        help="truncate to L sub-word tokens (truncated words are counted)",
    )
    p.add_argument("--lr", type=_positive_float, metavar="LR")
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument(
        "--device",
        default="auto",
        metavar="cpu|cuda|cuda:N",
        help="default: cuda:0 when available, else cpu",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: bf16 on GPUs that have it, fp16 (with a grad scaler) before, fp32 on CPU",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="allow downloading --model and hf: data from the Hugging Face hub (never without it)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show transformers' and tokenizers' warnings, load reports and progress bars",
    )


def workload_options(args: argparse.Namespace, **more):
    """The run's Options from the `add_workload_arguments` flags, plus what a command adds."""
    from finetune.prep import Options

    fields = dict(
        preset=args.preset,
        model=args.model,
        train_file=args.train_file,
        eval_file=args.eval_file,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        download=args.download,
        verbose=args.verbose,
    )
    return Options(**{**fields, **more})


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m finetune",
        description="Fine-tune BertForTokenClassification for NER (a smoke benchmark).",
    )
    add_workload_arguments(p)
    p.add_argument(
        "--max-steps", type=_positive_int, metavar="N", help="stop after N optimizer steps"
    )
    p.add_argument(
        "--bucket-batches",
        type=_window,
        default=3,  # the same default as Options.bucket_batches (a test checks it)
        metavar="W",
        help="length grouping: sort by length within windows of W batches, then shuffle the "
        "batches (default 3; 1: random batches, as the reference Trainer; 0: the Trainer's "
        "group_by_length window, min(n/(4*batch), 50)); docs/benchmarks.md has the figures",
    )
    p.add_argument(
        "--f1-gate",
        type=_unit_float,
        metavar="X",
        help="require dev F1 >= X (default: the preset's gate on the built-in corpus; with your "
        "data or checkpoint, only that training worked)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--output-dir", metavar="D", help="save the fine-tuned model and tokenizer here")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON (atomically)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    return p


def _write_json(path: str, doc: dict) -> None:
    write_atomic(path, json.dumps(doc, indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, float):
        return None
    return str(value)


def _finite(doc):
    """NaN and inf are not JSON: write them as null."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_finite(v) for v in doc]
    return doc


def _fmt(value, spec: str, none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def summary(doc: dict) -> str:
    t, e, g = doc["train"], doc["eval"], doc["gate"]
    verdict = "PASSED" if g["passed"] else "FAILED: " + "; ".join(g["reasons"])
    if g.get("f1_threshold") is not None:
        gate_line = f"dev F1 {e['f1']:.4f} >= {g['f1_threshold']}: {verdict}"
    else:
        gate_line = f"training works (loss finite and falling, evaluation run): {verdict}"
    # a checkpoint's run is named by the checkpoint: the preset's name would say nothing true
    source = doc["model"]["source"]
    what = doc["config"]["preset"] if source.startswith("preset:") else source
    lines = [
        f"finetune {what} on {doc['device']}"
        + (f" ({doc['gpu_name']})" if doc.get("gpu_name") else "")
        + f", {doc['dtype']}, {doc['model']['parameters']:,} parameters",
        f"  gate   : {gate_line}",
        f"           ({g.get('why') or 'the preset gate'})",
        f"  eval   : P {e['precision']:.4f}  R {e['recall']:.4f}  strict-IOB2 F1 "
        f"{e['strict_iob2']['f1']:.4f}  ("
        + ", ".join(f"{k} {v['f1']:.3f}" for k, v in e["per_type"].items())
        + ")",
        f"  train  : {t['steps']} steps in {t['wall_s']:.1f} s; {_fmt(t['samples_per_s'], ',.1f')} "
        f"samples/s, {_fmt(t['real_tokens_per_s'], ',.0f')} real tokens/s, "
        f"{_fmt(t['padded_tokens_per_s'], ',.0f')} padded tokens/s",
        f"  steps  : p50 {_fmt(t['step_time_p50_s'] and t['step_time_p50_s'] * 1e3, '.2f')} ms, "
        f"p95 {_fmt(t['step_time_p95_s'] and t['step_time_p95_s'] * 1e3, '.2f')} ms "
        f"({t['warmup_steps_excluded']} warm-up steps excluded); loss "
        f"{_fmt(t['loss_first'], '.4f')} -> {_fmt(t['loss_last'], '.4f')}",
        f"  compute: {_fmt(t['model_tflops_per_s'], '.3f')} model TFLOP/s, MFU "
        + (f"{t['mfu']:.1%}" if t["mfu"] is not None else f"n/a ({t['mfu_note']})")
        + f"; peak memory {_fmt(t['peak_memory_bytes'] and t['peak_memory_bytes'] / 2**20, ',.0f')} MiB"
        f"; time to gate {_fmt(t['time_to_gate_s'], '.1f')} s",
    ]
    if doc["model"].get("load_note"):
        lines.append(f"  model  : {doc['model']['load_note']}")
    trunc = doc["data"]["truncated_words"]
    if trunc["train"] or trunc["eval"]:
        lines.append(
            f"  note   : {trunc['train']} train and {trunc['eval']} eval words were lost to "
            f"--max-length {doc['config']['max_length']} (eval scores them as O)"
        )
    return "\n".join(lines)


def _error_doc(status: str, error: str, args: argparse.Namespace) -> dict:
    return {
        "schema_version": 1,
        "status": status,
        "error": error,
        "device": args.device,
        "gpu_name": None,
        "dtype": args.dtype,
        "model": None,
        "config": {
            "preset": args.preset,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "epochs": args.epochs,
            "max_steps": args.max_steps,
        },
        "train": None,
        "eval": None,
        "gate": {"passed": False, "reasons": [error]},
    }


def _is_main() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already reported)
        return exc.code if isinstance(exc.code, int) else EXIT_INPUT

    def fail(code: int, status: str, message: str) -> int:
        print(f"finetune: {message}", file=sys.stderr)
        if args.json and _is_main():  # under a launcher, rank 0 writes the one JSON
            try:
                _write_json(args.json, _error_doc(status, message, args))
            except UsageError:
                pass
        return code

    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            return fail(EXIT_INPUT, "input-error", f"--json {args.json}: no such folder {folder}")
    from finetune import quiet

    quiet.configure(
        verbose=args.verbose, hub_bars=args.download and not (args.no_progress or args.quiet)
    )
    try:
        from finetune import train as tr
    except ImportError as exc:
        return fail(
            EXIT_INPUT,
            "skipped",
            f"needs torch and transformers ({exc}); pip install 'gpu-path-check[bench]'",
        )
    from finetune import distributed

    opts = workload_options(
        args,
        max_steps=args.max_steps,
        bucket_batches=args.bucket_batches,
        compile=args.compile,
        output_dir=args.output_dir,
        progress=False if args.no_progress else None,
        f1_gate=args.f1_gate,
    )
    try:
        dist = distributed.setup(args.device)  # joins a launcher's process group, if any
        opts.device = distributed.device_spec(dist, opts.device)
        prep = tr.prepare(opts)
        for note in prep.notes:
            print(f"finetune: {note}", file=sys.stderr)
        doc = tr.train_and_evaluate(prep)
    except (tr.InputError, distributed.DistError) as exc:
        return fail(EXIT_INPUT, "input-error", f"error: {exc}")
    except tr.OutOfMemory as exc:
        return fail(EXIT_GATE, "oom", f"out of memory: {exc}")
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP via gpucheck.proc
        return fail(exit_code(exc), "interrupted", "interrupted")
    except Exception as exc:  # a bug or a broken install: one line, the traceback on request
        if os.environ.get("FINETUNE_DEBUG"):
            raise
        where = ""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        first = str(exc).splitlines()[0] if str(exc) else ""
        return fail(
            EXIT_INTERNAL,
            "crash",
            f"internal error: {type(exc).__name__}: {first[:300]}"
            f"{where} (rerun with FINETUNE_DEBUG=1 for the traceback)",
        )
    if not dist.is_main:  # rank 0 evaluates and reports for every rank
        distributed.teardown(dist)
        return EXIT_OK
    distributed.teardown(dist)
    doc = _finite(doc)
    if args.json:
        try:
            _write_json(args.json, doc)
        except UsageError as exc:
            print(f"finetune: {exc}", file=sys.stderr)
            return EXIT_INPUT
    if not args.quiet:
        print(summary(doc))
    return EXIT_OK if doc["gate"]["passed"] else EXIT_GATE
