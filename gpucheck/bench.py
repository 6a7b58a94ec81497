"""The smoke benchmark glue: run `python -m finetune` in a child process, read its JSON.

The child runs in its own process group with a timeout, so a hung GPU or a crash cannot take
gpucheck with it; a CUDA out-of-memory is retried once with half the batch. This module never
imports torch or transformers (the child does).

Finding ids (docs/findings.md): GC401 gate failed, GC402 non-finite loss, GC403 out of
memory after the retry, GC404 timeout, GC405 crash, GC406 a GPU much slower than its peers,
GC407 benchmark skipped (torch or transformers missing in that interpreter).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpucheck.findings import Finding, Severity
from gpucheck.node import bench_glue  # torchrun runs; declares GC6xx
from gpucheck.proc import Child
from gpucheck.snapshot import Snapshot

STATUSES = ("ok", "gate-failed", "nan-loss", "oom", "timeout", "crash", "skipped")
SLOW_RATIO = 0.7  # a GPU under 0.7x the median samples/s of its same-model peers is flagged
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class BenchResult:
    device: str  # "cpu" | "cuda:N"
    preset: str
    status: str  # one of STATUSES
    duration_s: float
    gpu_name: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None  # the finetune JSON document
    command: tuple[str, ...] = ()
    retried_with_batch: int | None = None  # the batch size of the OOM retry, when there was one
    returncode: int | None = None
    stderr_tail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "gpu_name": self.gpu_name,
            "preset": self.preset,
            "status": self.status,
            "duration_s": self.duration_s,
            "error": self.error,
            "result": self.result,
            "command": list(self.command),
            "retried_with_batch": self.retried_with_batch,
            "returncode": self.returncode,
        }


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


def _run_child(cmd: list[str], timeout: float) -> tuple[int | None, str, float, bool]:
    """(returncode, stderr, seconds, timed_out); the whole process group dies on timeout."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
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
) -> BenchResult:
    """Run the benchmark once on `device` (retrying a CUDA OOM once with half the batch)."""
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
    launch: dict[str, Any] | None = None,
) -> list[BenchResult]:
    """The benchmark on `device`, or on every usable GPU in turn (or the CPU). Several GPUs
    (or the torchrun flags in `launch`) run together as one DDP run instead:
    gpucheck/node/bench_glue.py."""
    devices = [device] if device else bench_devices(snapshot)
    chosen = preset or choose_preset(snapshot)
    if device == "cpu" and preset is None:
        chosen = "tiny"
    nproc = bench_glue.ranks_for(snapshot, device, launch)
    if nproc:
        kw = {"preset": chosen, "timeout": timeout, "python": python, "extra_args": extra_args}
        return [bench_glue.run_distributed_bench(snapshot, nproc, launch, **kw)]
    return [
        run_bench(
            preset=chosen,
            device=d,
            timeout=timeout,
            python=python,
            extra_args=extra_args,
            gpu_name=_gpu_name(snapshot, d),
        )
        for d in devices
    ]


# --- findings -------------------------------------------------------------------------------


def _gpu_index(device: str) -> int | None:
    if device.startswith("cuda"):
        try:
            return int(device.partition(":")[2] or 0)
        except ValueError:
            return None
    return None


def _who(r: BenchResult) -> str:
    return f"{r.device} ({r.gpu_name})" if r.gpu_name else r.device


def _rerun(r: BenchResult, *more: str) -> str:
    return " ".join(["python -m finetune", "--preset", r.preset, "--device", r.device, *more])


def bench_findings(results: Iterable[BenchResult]) -> list[Finding]:
    results = list(results)
    out: list[Finding] = []
    for r in results:
        if "launch" in r.extra:  # a torchrun run: GC620-GC623 name the rank, host and GPU
            out.extend(bench_glue.distributed_findings(r))
            if r.status in ("timeout", "crash"):
                continue
        gpu = _gpu_index(r.device)
        doc = r.result or {}
        ev = doc.get("eval") or {}
        tr = doc.get("train") or {}
        gate = doc.get("gate") or {}
        base = (f"preset {r.preset} on {_who(r)}", f"{r.duration_s:.1f} s")
        if r.status == "gate-failed":
            reasons = gate.get("reasons") or []
            out.append(
                Finding(
                    "GC401",
                    Severity.ERROR,
                    f"smoke benchmark failed its gate on {_who(r)}",
                    (
                        *base,
                        *reasons,
                        f"dev F1 {ev.get('f1', float('nan')):.4f}, gate {gate.get('f1_threshold')}",
                        f"loss {tr.get('loss_first')} -> {tr.get('loss_last')}",
                    ),
                    "The training ran but did not learn enough. Look at the GPU health findings "
                    "(ECC, throttling) first, then rerun by hand and compare with fp32: "
                    f"`{_rerun(r)}` and `{_rerun(r, '--dtype fp32')}`.",
                    gpu,
                )
            )
        elif r.status == "nan-loss":
            out.append(
                Finding(
                    "GC402",
                    Severity.ERROR,
                    f"the training loss became NaN or infinite on {_who(r)}",
                    (
                        *base,
                        f"dtype {doc.get('dtype')}",
                        f"loss {tr.get('loss_first')} -> {tr.get('loss_last')}",
                    ),
                    "Mixed-precision overflow or a faulty GPU: rerun in fp32 "
                    f"(`{_rerun(r, '--dtype fp32')}`); if fp32 also fails, check ECC errors "
                    "(`nvidia-smi -q -d ECC`) and the driver log (`sudo dmesg | grep -i xid`).",
                    gpu,
                )
            )
        elif r.status == "oom":
            retried = (
                f"retried with batch size {r.retried_with_batch}"
                if r.retried_with_batch
                else "not retried"
            )
            out.append(
                Finding(
                    "GC403",
                    Severity.ERROR,
                    f"the smoke benchmark ran out of memory on {_who(r)}",
                    (*base, retried, *([r.error] if r.error else [])),
                    "Free the GPU (`nvidia-smi` lists the processes holding memory) or run a smaller "
                    f"preset: `gpucheck bench --bench-preset small` or `{_rerun(r, '--batch-size 8')}`.",
                    gpu,
                )
            )
        elif r.status == "timeout":
            out.append(
                Finding(
                    "GC404",
                    Severity.ERROR,
                    f"the smoke benchmark timed out on {_who(r)}",
                    (*base, *([r.error] if r.error else [])),
                    "A hung or very slow device, or a timeout too short for the preset: check "
                    "`nvidia-smi` for a GPU stuck at 100% or in an error state, then rerun with more "
                    "time (`gpucheck bench --bench-timeout 1800`) or a smaller preset "
                    "(`--bench-preset tiny`).",
                    gpu,
                )
            )
        elif r.status == "crash":
            tail = (r.stderr_tail or "").strip().splitlines()[-3:]
            out.append(
                Finding(
                    "GC405",
                    Severity.ERROR,
                    f"the smoke benchmark crashed on {_who(r)}",
                    (*base, f"exit status {r.returncode}", *([r.error] if r.error else []), *tail),
                    f"Run it by hand to see the whole error: `FINETUNE_DEBUG=1 {_rerun(r)}`.",
                    gpu,
                )
            )
        elif r.status == "skipped":
            out.append(
                Finding(
                    "GC407",
                    Severity.INFO,
                    "smoke benchmark skipped: torch or transformers missing",
                    (*base, *([r.error] if r.error else [])),
                    "Install the benchmark's packages: `pip install 'gpucheck[bench]'` (with the torch "
                    "build `gpucheck recommend` names).",
                    gpu,
                )
            )
    out.extend(_slow_gpus(results))
    return out


def _slow_gpus(results: Sequence[BenchResult]) -> list[Finding]:
    groups: dict[str, list[tuple[BenchResult, float]]] = {}
    for r in results:
        if r.status not in ("ok", "gate-failed") or not r.device.startswith("cuda") or not r.result:
            continue
        sps = (r.result.get("train") or {}).get("samples_per_s")
        if isinstance(sps, (int, float)) and sps > 0:
            groups.setdefault(f"{r.gpu_name}|{r.preset}", []).append((r, float(sps)))
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        median = statistics.median(s for _, s in members)
        for r, s in members:
            if s < SLOW_RATIO * median:
                peers = ", ".join(f"{m.device} {v:,.0f}" for m, v in members if m is not r)
                out.append(
                    Finding(
                        "GC406",
                        Severity.WARN,
                        f"{_who(r)} is much slower than its peers ({s / median:.2f}x the median)",
                        (
                            f"{r.device}: {s:,.0f} samples/s",
                            f"peers: {peers} samples/s",
                            f"median {median:,.0f} samples/s, threshold {SLOW_RATIO}x",
                        ),
                        "A throttled or degraded card: check its clocks, temperature and power "
                        "(`nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER -i "
                        f"{_gpu_index(r.device)}`) and its PCIe link (`nvidia-smi -q -i "
                        f"{_gpu_index(r.device)} | grep -A3 'Link'`), and compare with the GPU "
                        "health findings.",
                        _gpu_index(r.device),
                    )
                )
    return out
