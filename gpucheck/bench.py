"""The smoke benchmark glue: run `python -m finetune` in a child process, read its JSON.

The child runs in its own process group with a timeout, so a hung GPU or a crash cannot take
gpucheck with it; a CUDA out-of-memory is retried once with half the batch. This module never
imports torch or transformers (the child does).

Finding ids (docs/findings.md): GC401 gate failed, GC402 non-finite loss, GC403 out of
memory after the retry, GC404 timeout, GC405 crash, GC406 a GPU much slower than its peers,
GC407 benchmark skipped (torch or transformers missing in that interpreter); GC308 a PCIe
link below its maximum while the benchmark loads the GPU (NVML sampled during the run).

The whole-run deadline (`--timeout`) bounds the sum of the per-device runs: each device gets
what is left (less a reserve for writing the report), and a device whose turn comes after
the deadline is recorded as not run, so that a report is always written before any outer
limit. Devices are named by CUDA index (`cuda:N`, what the child is told); findings carry the
NVML index joined on UUID/PCI bus id (`diagnose.facts.nvml_index`), as nvidia-smi numbers them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gpucheck.diagnose import declare, facts
from gpucheck.node import bench_glue  # torchrun runs; declares GC6xx
from gpucheck.plain import StrEnum, to_plain, values
from gpucheck.probe.sampler import NvmlSampler, Sample
from gpucheck.proc import Child
from gpucheck.snapshot import Snapshot


class BenchStatus(StrEnum):
    """How one benchmark run ended (the `status` of finetune's JSON, or what gpucheck saw)."""

    OK = "ok"
    GATE_FAILED = "gate-failed"
    NAN_LOSS = "nan-loss"
    OOM = "oom"
    TIMEOUT = "timeout"
    CRASH = "crash"
    SKIPPED = "skipped"


STATUSES = values(BenchStatus)
declare("GC401", "GC402", "GC403", "GC404", "GC405", "GC406", "GC407", where="gpucheck.bench")
REPORT_RESERVE_S = 5.0  # kept back from the whole-run deadline to judge and write the report
MIN_RUN_S = 10.0  # a device with less time than this left is not started
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class BenchResult:
    device: str  # "cpu" | "cuda:N"
    preset: str
    status: BenchStatus  # a plain str of the same value is accepted too
    duration_s: float
    gpu_name: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None  # the finetune JSON document
    command: tuple[str, ...] = ()
    retried_with_batch: int | None = None  # the batch size of the OOM retry, when there was one
    returncode: int | None = None
    stderr_tail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    gpu: int | None = None  # NVML index of the device (None: CPU, or not joinable)
    samples: tuple[Sample, ...] = ()  # NVML while it ran (GPU runs with NVML only)
    sampling_error: str | None = None
    not_run: bool = False  # the whole-run deadline came before this device's turn

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


# --- what to run ----------------------------------------------------------------------------


def _usable_devices(snapshot: Snapshot) -> list[tuple[int, str | None]]:
    rt = snapshot.torch_runtime
    if rt is None or rt.status != "ok" or not rt.cuda_available:
        return []
    out = []
    for d in rt.devices:
        if d.error is None and d.matmul_ok is not False:
            out.append((d.index, d.name))
    if not out and rt.device_count:  # devices were counted but not described
        out = [(i, None) for i in range(rt.device_count)]
    return out


def choose_preset(snapshot: Snapshot) -> str:
    """tiny when no GPU is usable from torch, base (BERT-base shape) on a GPU."""
    return "base" if _usable_devices(snapshot) else "tiny"


def bench_devices(snapshot: Snapshot) -> list[str]:
    """Each GPU torch can use, in turn, or ["cpu"]."""
    devices = [f"cuda:{i}" for i, _ in _usable_devices(snapshot)]
    return devices or ["cpu"]


def _gpu_name(snapshot: Snapshot, device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    index = int(device.partition(":")[2] or 0)
    for i, name in _usable_devices(snapshot):
        if i == index:
            return name
    return None


# --- running --------------------------------------------------------------------------------


USER_FLAGS = ("model", "train_file", "eval_file", "f1_gate")  # passed on with their values


def user_args(args: Any) -> list[str]:
    """`gpucheck bench --model/--train-file/--eval-file/--f1-gate/--download` as the child's
    `python -m finetune` flags (same names and meaning)."""
    out: list[str] = []
    for name in USER_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    if getattr(args, "download", False):
        out.append("--download")
    return out


def child_env(cmd: Sequence[str]) -> dict[str, str]:
    """The child's environment: offline (HF_HUB_OFFLINE=1) unless it was given --download."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if "--download" in cmd:
        del env["HF_HUB_OFFLINE"]
    return env


def _run_child(cmd: list[str], timeout: float) -> tuple[int | None, str, float, bool]:
    """(returncode, stderr, seconds, timed_out); the whole process group dies on timeout."""
    env = child_env(cmd)
    child = Child(cmd, timeout=max(0.001, timeout), env=env, stdout="devnull")
    if child.start_exc is not None:
        raise child.start_exc
    done = child.wait()
    return done.returncode, done.stderr, done.seconds, done.timed_out


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _last_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else None


def _batch_size(doc: dict | None, preset: str) -> int:
    if (
        doc
        and isinstance(doc.get("config"), dict)
        and isinstance(doc["config"].get("batch_size"), int)
    ):
        return doc["config"]["batch_size"]
    try:
        from finetune.config import PRESETS  # pure data, no torch

        return PRESETS[preset].batch_size
    except (ImportError, KeyError):
        return 32


def _once(python: str, preset: str, device: str, timeout: float, extra: Sequence[str]):
    fd, path = tempfile.mkstemp(prefix="gpucheck-bench-", suffix=".json")
    os.close(fd)
    os.unlink(path)  # finetune writes it atomically; absent means it never got that far
    cmd = [
        python,
        "-m",
        "finetune",
        "--preset",
        preset,
        "--device",
        device,
        "--json",
        path,
        "--no-progress",
        "--quiet",
        *extra,
    ]
    try:
        try:
            rc, stderr, seconds, timed_out = _run_child(cmd, timeout)
        except OSError as exc:
            return (
                cmd,
                None,
                f"cannot start {python}: {exc.strerror or exc}",
                0.0,
                False,
                None,
                "crash",
            )
        doc = _read_json(path)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    if timed_out:
        return cmd, rc, stderr, seconds, True, doc, "timeout"
    status = doc.get("status") if doc else None
    if status in ("ok", "gate-failed", "nan-loss", "oom", "skipped"):
        return cmd, rc, stderr, seconds, False, doc, status
    if "out of memory" in stderr.lower():
        return cmd, rc, stderr, seconds, False, doc, "oom"
    return cmd, rc, stderr, seconds, False, doc, "crash"


def run_bench(
    *,
    preset: str,
    device: str,
    timeout: float,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
    gpu_name: str | None = None,
    gpu: int | None = None,
) -> BenchResult:
    """Run the benchmark once on `device` (retrying a CUDA OOM once with half the batch),
    sampling NVML GPU `gpu` meanwhile when it is given."""
    sampler = NvmlSampler([gpu] if gpu is not None else []).start()
    try:
        result = _run_bench(preset, device, timeout, python, extra_args, gpu_name)
    finally:
        samples = sampler.stop()
    return replace(
        result,
        gpu=gpu,
        samples=tuple(samples),
        sampling_error=sampler.error if gpu is not None else None,
    )


def _run_bench(
    preset: str,
    device: str,
    timeout: float,
    python: str,
    extra_args: Sequence[str],
    gpu_name: str | None,
) -> BenchResult:
    t0 = time.monotonic()
    deadline = t0 + timeout
    cmd, rc, stderr, _s, _t, doc, status = _once(python, preset, device, timeout, extra_args)
    retried = None
    if status == "oom" and device.startswith("cuda"):
        half = _batch_size(doc, preset) // 2
        left = deadline - time.monotonic()
        if half >= 1 and left > 1:
            retried = half
            extra = [*_without_batch(extra_args), "--batch-size", str(half)]
            cmd, rc, stderr, _s, _t, doc, status = _once(python, preset, device, left, extra)
    duration = time.monotonic() - t0
    if status == "timeout":
        error = f"no result within {timeout:g} s; the child process group was killed"
    elif doc is not None and doc.get("error"):
        error = str(doc["error"])
    elif status in ("crash", "oom", "skipped"):
        error = _last_line(stderr) or f"exit status {rc}"
    else:
        error = None
    name = gpu_name or (doc.get("gpu_name") if doc else None)
    return BenchResult(
        device=device,
        preset=preset,
        status=status,
        duration_s=round(duration, 3),
        gpu_name=name,
        error=error,
        result=doc if doc and doc.get("train") else None,
        command=tuple(cmd),
        retried_with_batch=retried,
        returncode=rc,
        stderr_tail=stderr[-_STDERR_TAIL:] if stderr else None,
    )


def _without_batch(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--batch-size":
            skip = True
            continue
        if a.startswith("--batch-size="):
            continue
        out.append(a)
    return out


def run_benches(
    snapshot: Snapshot,
    *,
    preset: str | None = None,
    device: str | None = None,
    timeout: float = 600.0,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
    deadline: float | None = None,
    launch: dict[str, Any] | None = None,
) -> list[BenchResult]:
    """The benchmark on `device`, or on every usable GPU in turn (or the CPU).

    `timeout` bounds each run; `deadline` (a time.monotonic() value, the whole-run limit)
    bounds their sum: each run gets what is left of it less REPORT_RESERVE_S, and devices
    whose turn comes too late are returned as not run. Several GPUs (or the torchrun flags in
    `launch`) run together as one DDP run instead: gpucheck/node/bench_glue.py.
    """
    devices = [device] if device else bench_devices(snapshot)
    chosen = preset or choose_preset(snapshot)
    if device == "cpu" and preset is None:
        chosen = "tiny"
    nproc = bench_glue.ranks_for(snapshot, device, launch)
    if nproc:
        left = timeout if deadline is None else deadline - time.monotonic() - REPORT_RESERVE_S
        limit = min(timeout, max(1.0, left))
        kw = {"preset": chosen, "timeout": limit, "python": python, "extra_args": extra_args}
        gpus = [facts.nvml_index(snapshot, i) for i, _ in _usable_devices(snapshot)]
        sampler = NvmlSampler([g for g in gpus if g is not None]).start()
        try:
            result = bench_glue.run_distributed_bench(snapshot, nproc, launch, **kw)
        finally:
            samples = sampler.stop()
        return [replace(result, samples=tuple(samples), sampling_error=sampler.error)]
    results = []
    for d in devices:
        index = _gpu_index(d)
        gpu = facts.nvml_index(snapshot, index) if index is not None else None
        name = _gpu_name(snapshot, d)
        limit = timeout
        if deadline is not None:
            left = deadline - time.monotonic() - REPORT_RESERVE_S
            if left < MIN_RUN_S:
                results.append(_not_run(chosen, d, name, gpu, left + REPORT_RESERVE_S))
                continue
            limit = min(timeout, left)
        r = run_bench(
            preset=chosen,
            device=d,
            timeout=limit,
            python=python,
            extra_args=extra_args,
            gpu_name=name,
            gpu=gpu,
        )
        if r.status == "timeout" and limit < timeout:
            r = replace(r, error=f"{r.error}; the whole-run --timeout left it {limit:.0f} s")
        results.append(r)
    return results


def _not_run(
    preset: str, device: str, name: str | None, gpu: int | None, left: float
) -> BenchResult:
    return BenchResult(
        device=device,
        preset=preset,
        status="timeout",
        duration_s=0.0,
        gpu_name=name,
        error=f"not run: the whole-run --timeout had {max(0.0, left):.0f} s left at its turn",
        gpu=gpu,
        not_run=True,
    )


# --- findings -------------------------------------------------------------------------------


def _gpu_index(device: str) -> int | None:
    if device.startswith("cuda"):
        try:
            return int(device.partition(":")[2] or 0)
        except ValueError:
            return None
    return None


# The findings (GC4xx, and GC308 from the samples) are judged in gpucheck/bench_judge.py.
from gpucheck.bench_judge import (  # noqa: E402 - re-exported: callers use bench.bench_findings
    BUSY_PERCENT,
    SLOW_RATIO,
    bench_findings,
    merge,
    pcie_under_load,
)

__all__ = [
    "BUSY_PERCENT",
    "SLOW_RATIO",
    "BenchResult",
    "BenchStatus",
    "bench_devices",
    "bench_findings",
    "choose_preset",
    "merge",
    "pcie_under_load",
    "run_bench",
    "run_benches",
    "user_args",
]
