"""`gpucheck bench/check` on several GPUs or nodes: one torchrun run of `python -m finetune`.

gpucheck/bench.py hands over here when `ranks_for` says so (2+ usable GPUs and no
--bench-device, or --nproc-per-node / --nnodes / --rdzv-endpoint given); the result is one
BenchResult carrying rank 0's JSON (with its `distributed` block) and the launch outcome.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from gpucheck.errors import UsageError
from gpucheck.findings import Finding
from gpucheck.node import preflight
from gpucheck.node.launch import LaunchSpec, bench_args, launch
from gpucheck.node.outcome import launch_findings, slow_rank_findings
from gpucheck.snapshot import Snapshot

VERDICTS = ("ok", "gate-failed", "nan-loss", "oom", "skipped")  # finetune's JSON statuses
OPTION_NAMES = ("nproc_per_node", "nnodes", "rdzv_endpoint", "rdzv_backend", "rdzv_id")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The launch flags of a parsed command line (absent on commands without them)."""
    return {k: getattr(args, k) for k in OPTION_NAMES if getattr(args, k, None) is not None}


def usable_gpus(snapshot: Snapshot) -> list[tuple[int, str | None]]:
    rt = snapshot.torch_runtime
    if rt is None or rt.status != "ok" or not rt.cuda_available:
        return []
    out = [(d.index, d.name) for d in rt.devices if d.error is None and d.matmul_ok is not False]
    return out or [(i, None) for i in range(rt.device_count or 0)]


def ranks_for(snapshot: Snapshot, device: str | None, opts: Mapping[str, Any] | None) -> int | None:
    """Ranks per node for a torchrun run, or None for the one-process-per-device path.
    Bad combinations are usage errors (exit 2) before anything starts. `opts` None (a caller
    that is not the command line) keeps the one-process-per-device path."""
    if opts is None:
        return None
    opts = dict(opts)
    nproc, nnodes = opts.get("nproc_per_node"), opts.get("nnodes", 1)
    endpoint = opts.get("rdzv_endpoint")
    gpus = len(usable_gpus(snapshot))
    if nnodes < 1:
        raise UsageError(f"--nnodes {nnodes}: needs at least 1 node")
    if nnodes > 1 and not endpoint:
        raise UsageError(
            "--nnodes above 1 needs --rdzv-endpoint HOST:PORT (the same on every node)"
        )
    if nproc is not None:
        preflight.check_nproc(nproc, gpus)
    explicit = nproc is not None or nnodes > 1 or endpoint is not None
    if device and explicit:
        raise UsageError("--bench-device names one device; drop it to run several ranks")
    if device or (not explicit and gpus < 2):
        return None
    if nproc is None:
        nproc = gpus if gpus >= 1 else 1
    if nproc == 1 and nnodes == 1 and endpoint is None:
        return None
    if endpoint:
        preflight.check_endpoint(endpoint, nnodes)
    return nproc


def run_distributed_bench(
    snapshot: Snapshot,
    nproc: int,
    opts: Mapping[str, Any] | None,
    *,
    preset: str,
    timeout: float,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
):
    from gpucheck.bench import BenchResult, _read_json  # bench imports this module first

    opts = dict(opts or {})
    gpus = usable_gpus(snapshot)
    device = "cuda" if gpus else "cpu"
    fd, path = tempfile.mkstemp(prefix="gpucheck-ddp-", suffix=".json")
    os.close(fd)
    os.unlink(path)  # rank 0 writes it; absent means it never got that far
    spec = LaunchSpec(
        nproc_per_node=nproc,
        nnodes=opts.get("nnodes", 1),
        rdzv_endpoint=opts.get("rdzv_endpoint"),
        rdzv_backend=opts.get("rdzv_backend", "c10d"),
        rdzv_id=opts.get("rdzv_id"),
        python=python,
        args=bench_args(path, preset, ["--device", device, *extra_args]),
        timeout=timeout,
    )
    try:
        outcome = launch(spec)
        doc = _read_json(path)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    verdict = (doc or {}).get("status") if doc else None
    if outcome.status == "crash" and verdict in VERDICTS and outcome.failed[:1] == (0,):
        # rank 0 exits 1 on a failed gate (or OOM) after writing its JSON: a verdict, no crash
        outcome = dataclasses.replace(outcome, status="ok", failed=())
    if outcome.status == "ok":
        status = verdict if verdict in VERDICTS else "crash"
    else:
        status = "crash" if outcome.status in ("crash", "start-failed") else "timeout"
    error = (doc or {}).get("error") if doc else None
    if outcome.status != "ok":
        found = launch_findings(outcome)
        error = found[0].title if found else outcome.status
    # a node that is not rank 0 writes no JSON: its figures are in rank 0's report
    if outcome.status == "ok" and doc is None and not any(r.rank == 0 for r in outcome.ranks):
        status = "ok"
    return BenchResult(
        device=device,
        preset=preset,
        status=status,
        duration_s=outcome.duration_s,
        gpu_name=gpus[0][1] if gpus else None,
        error=error,
        result=doc if doc and doc.get("train") else None,
        command=outcome.command,
        returncode=outcome.returncode,
        stderr_tail=outcome.stderr_tail or None,
        extra={"launch": outcome},
    )


def distributed_findings(result) -> list[Finding]:
    """GC620-GC623 for one distributed BenchResult."""
    outcome = result.extra.get("launch")
    out = launch_findings(outcome) if outcome is not None else []
    out += slow_rank_findings((result.result or {}).get("distributed"))
    return out
