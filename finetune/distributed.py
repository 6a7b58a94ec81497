"""torch.distributed for the smoke benchmark: set-up from the launcher's environment, DDP,
per-rank sharding, gathering per-rank figures to rank 0, and a short all_reduce measurement.

Any launcher that sets the torch.distributed environment works (torchrun, `srun ... torchrun`,
a Kubernetes Job): RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
NCCL on CUDA with each rank on cuda:LOCAL_RANK, gloo on CPU. With WORLD_SIZE unset or 1 every
function here is a no-op, so a single process runs exactly as without this module.

A stuck collective must become an error, not a hang: the process group has a timeout
(FINETUNE_DIST_TIMEOUT seconds, default 300) and NCCL's async error handling is on
(TORCH_NCCL_ASYNC_ERROR_HANDLING=1), so the watchdog aborts a collective that outlives it.

When GPUCHECK_RANK_STATUS_DIR is set (gpucheck's launcher sets it), each rank writes
rank<R>.json there at each stage (spawned, rendezvous, joined, training, allreduce, done), so
that the launcher can say which rank never joined, hung or crashed, on which host and device.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import socket
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as tdist

STATUS_DIR_ENV = "GPUCHECK_RANK_STATUS_DIR"
TIMEOUT_ENV = "FINETUNE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
ALLREDUCE_SIZES = (1 << 16, 1 << 20, 1 << 22)  # bytes: latency-bound to bandwidth-bound
T = TypeVar("T")
_ACTIVE: Dist | None = None  # set by setup(): the training loop asks active() for it


class DistError(RuntimeError):
    """A launcher environment this run cannot use (e.g. more local ranks than GPUs)."""


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    backend: str | None = None  # "nccl" | "gloo"; None for a single process
    device: torch.device | None = None  # the rank's device; None: the caller chooses
    host: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise DistError(f"{name}={text!r} is not an integer") from None


def status(dist: Dist | None, stage: str, **extra: Any) -> None:
    """Record this rank's stage for the launcher (atomically); silent when not asked for."""
    folder = os.environ.get(STATUS_DIR_ENV)
    if not folder:
        return
    rank = dist.rank if dist else _env_int("RANK", 0)
    doc = {
        "rank": rank,
        "local_rank": dist.local_rank if dist else _env_int("LOCAL_RANK", 0),
        "host": socket.gethostname(),
        "device": str(dist.device) if dist and dist.device else None,
        "pid": os.getpid(),
        "stage": stage,
        "time": time.time(),
        **extra,
    }
    path = os.path.join(folder, f"rank{rank}.json")
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # a status file is a diagnostic aid, never a reason to fail the run


def setup(device_spec: str = "auto") -> Dist:
    """Join the process group the launcher describes; a single process gets Dist()."""
    global _ACTIVE
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        _ACTIVE = Dist(host=socket.gethostname())
        return _ACTIVE
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    host = socket.gethostname()
    pre = Dist(rank, local_rank, world, local_world, host=host)
    status(pre, "spawned")
    use_cuda = device_spec != "cpu" and torch.cuda.is_available()
    if device_spec.startswith("cuda") and not torch.cuda.is_available():
        raise DistError(f"--device {device_spec}: CUDA is not available to this torch")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise DistError(
                f"local rank {local_rank} on {host} has no GPU: {torch.cuda.device_count()} "
                f"visible, {local_world} ranks per node (lower --nproc-per-node)"
            )
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
        # the watchdog aborts a collective that outlives the timeout instead of hanging
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "1")  # its name before torch 2.2
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist = Dist(rank, local_rank, world, local_world, backend, device, host)
    timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    status(dist, "rendezvous")
    kw = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout)}
    try:  # device_id (torch >= 2.3) binds the NCCL communicator to this rank's GPU at once
        tdist.init_process_group(**kw, device_id=device if use_cuda else None)
    except TypeError:
        tdist.init_process_group(**kw)
    status(dist, "joined")
    _ACTIVE = dist
    return dist


def active() -> Dist:
    """The Dist of this process: what setup() joined, else a single process."""
    return _ACTIVE if _ACTIVE is not None else Dist(host=socket.gethostname())


def device_spec(dist: Dist, requested: str) -> str:
    """The --device value this rank should use: its own GPU under a launcher."""
    return str(dist.device) if dist.enabled and dist.device is not None else requested


def wrap(model: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    """DistributedDataParallel around the model on a multi-rank run; the model otherwise."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    status(dist, "training")
    # No buffer broadcast in forward: rank 0 evaluates alone, and a collective there would
    # wait for ranks that are training (BERT's buffers are constants anyway).
    if dist.device is not None and dist.device.type == "cuda":
        i = dist.device.index
        return DDP(model, device_ids=[i], output_device=i, broadcast_buffers=False)
    return DDP(model, broadcast_buffers=False)


def per_rank(n: int, dist: Dist) -> int:
    """How many of `n` items (sentences) one rank trains on per epoch."""
    return math.ceil(n / dist.world_size) if dist.enabled else n


def shard(batches: Sequence[T], dist: Dist) -> list[T]:
    """This rank's share of the step's batches, the same count on every rank (DDP runs one
    all_reduce per step, so unequal counts would hang); wraps around like DistributedSampler."""
    if not dist.enabled or not batches:
        return list(batches)
    per = math.ceil(len(batches) / dist.world_size)
    return [batches[(dist.rank + k * dist.world_size) % len(batches)] for k in range(per)]


def gather(obj: Any, dist: Dist) -> list[Any]:
    """Every rank's `obj`, in rank order (on every rank); [obj] for a single process."""
    if not dist.enabled:
        return [obj]
    out: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(out, obj)
    return out


def busbw(algbw: float, n: int) -> float:
    """nccl-tests doc/PERFORMANCE.md: all_reduce bus bandwidth = algbw * 2(n-1)/n."""
    return algbw * 2 * (n - 1) / n if n > 1 else algbw


def allreduce_bench(
    dist: Dist, sizes: Sequence[int] = ALLREDUCE_SIZES, iters: int = 5
) -> dict[str, Any] | None:
    """A short all_reduce measurement over the whole group (None for a single process)."""
    if not dist.enabled:
        return None
    status(dist, "allreduce")
    cuda = dist.device is not None and dist.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dist.device)

    rows = []
    for size in sizes:
        t = torch.ones(size // 4, dtype=torch.float32, device=dist.device)
        tdist.all_reduce(t)  # warm-up (and the first connection set-up)
        sync()
        tdist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            tdist.all_reduce(t)
        sync()
        seconds = (time.perf_counter() - t0) / iters
        # the slowest rank decides the time, as nccl-tests reports it
        worst = torch.tensor([seconds], dtype=torch.float64, device=dist.device)
        tdist.all_reduce(worst, op=tdist.ReduceOp.MAX)
        seconds = float(worst.item())
        algbw = size / seconds / 1e9
        rows.append(
            {
                "bytes": size,
                "time_s": seconds,
                "algbw_gbps": round(algbw, 4),
                "busbw_gbps": round(busbw(algbw, dist.world_size), 4),
            }
        )
    return {
        "backend": dist.backend,
        "world_size": dist.world_size,
        "iters": iters,
        "formula": "busbw = algbw * 2(n-1)/n (nccl-tests doc/PERFORMANCE.md)",
        "sizes": rows,
    }


def rank_figures(dist: Dist, train: dict[str, Any] | None) -> dict[str, Any]:
    """This rank's line in the `distributed.ranks` list."""
    train = train or {}
    return {
        "rank": dist.rank,
        "local_rank": dist.local_rank,
        "host": dist.host,
        "device": str(dist.device) if dist.device is not None else None,
        "gpu_name": torch.cuda.get_device_name(dist.device)
        if dist.device is not None and dist.device.type == "cuda"
        else None,
        "samples_per_s": train.get("samples_per_s"),
        "samples": train.get("samples"),
        "steps": train.get("steps"),
        "wall_s": train.get("wall_s"),
        "pid": os.getpid(),
    }


def summarize(dist: Dist, ranks: list[dict[str, Any]], allreduce: dict | None) -> dict[str, Any]:
    """The `distributed` block of rank 0's JSON: every rank, the global rate, the slowest."""
    rated = [r for r in ranks if isinstance(r.get("samples_per_s"), (int, float))]
    slowest = min(rated, key=lambda r: r["samples_per_s"]) if rated else None
    median = statistics.median(r["samples_per_s"] for r in rated) if rated else None
    return {
        "world_size": dist.world_size,
        "local_world_size": dist.local_world_size,
        "backend": dist.backend,
        "hosts": sorted({r.get("host") for r in ranks if r.get("host")}),
        "ranks": sorted(ranks, key=lambda r: r["rank"]),
        "samples_per_s": sum(r["samples_per_s"] for r in rated) if rated else None,
        "slowest_rank": None
        if slowest is None
        else {
            "rank": slowest["rank"],
            "host": slowest.get("host"),
            "device": slowest.get("device"),
            "samples_per_s": slowest["samples_per_s"],
            "ratio_to_median": round(slowest["samples_per_s"] / median, 4) if median else None,
        },
        "allreduce": allreduce,
        "timeout_s": float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S),
    }


def finish(dist: Dist, train: dict[str, Any] | None) -> dict[str, Any] | None:
    """Collective end of a run: measure all_reduce, gather every rank's figures; rank 0 gets
    the `distributed` block, the other ranks None. Every rank must call it."""
    if not dist.enabled:
        return None
    ar = allreduce_bench(dist)
    ranks = gather(rank_figures(dist, train), dist)
    status(dist, "done")
    return summarize(dist, ranks, ar) if dist.is_main else None


def teardown(dist: Dist) -> None:
    global _ACTIVE
    _ACTIVE = None
    if dist.enabled and tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
