"""Launch a distributed run with torchrun itself (`python -m torch.distributed.run`), never hang.

torchrun runs in its own process group under the project's command runner with a timeout.
Its workers start sessions of their own (torch.distributed.elastic does that), so killing
torchrun's group does not reach them: every process of the run carries GPUCHECK_RUN_ID in its
environment, and after the run every process of ours with that id is killed (`sweep`). Each
rank records its stage in a status folder (finetune/distributed.py), which `outcome.classify`
reads to say which rank never joined, hung or crashed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpucheck import proc
from gpucheck.node.outcome import LaunchOutcome, classify

RUN_ID_ENV = "GPUCHECK_RUN_ID"
STATUS_DIR_ENV = "GPUCHECK_RANK_STATUS_DIR"  # read by finetune/distributed.py
PG_TIMEOUT_SHARE = 0.75  # the process group times out first, so a stuck collective is an error


@dataclass(frozen=True)
class LaunchSpec:
    nproc_per_node: int
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST:PORT; None with nnodes 1: --standalone
    rdzv_backend: str = "c10d"
    rdzv_id: str | None = None
    python: str = sys.executable
    entry: tuple[str, ...] = ("-m", "finetune")  # what each rank runs
    args: tuple[str, ...] = ()
    timeout: float = 600.0
    env: Mapping[str, str] | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """torchrun's own flag names, on `gpucheck check` and `gpucheck bench`."""
    group.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="ranks on this node, one per GPU (default: every usable GPU when there are 2 or more)",
    )
    group.add_argument(
        "--nnodes", type=int, default=1, metavar="M", help="nodes in the run (default 1)"
    )
    group.add_argument(
        "--rdzv-endpoint", metavar="HOST:PORT", help="c10d rendezvous of a multi-node run"
    )
    group.add_argument(
        "--rdzv-backend", default="c10d", choices=("c10d",), help="rendezvous backend (c10d)"
    )
    group.add_argument(
        "--rdzv-id",
        metavar="ID",
        help="run id shared by every node (default: SLURM_JOB_ID or gpucheck)",
    )


def torchrun_argv(spec: LaunchSpec, log_dir: str) -> list[str]:
    argv = [spec.python, "-m", "torch.distributed.run", f"--nproc-per-node={spec.nproc_per_node}"]
    if spec.nnodes == 1 and not spec.rdzv_endpoint:
        argv.append("--standalone")
    else:
        rdzv_id = spec.rdzv_id or os.environ.get("SLURM_JOB_ID") or "gpucheck"
        argv += [
            f"--nnodes={spec.nnodes}",
            f"--rdzv-backend={spec.rdzv_backend}",
            f"--rdzv-endpoint={spec.rdzv_endpoint}",
            f"--rdzv-id={rdzv_id}",
            f"--rdzv-conf=join_timeout={max(1, int(spec.timeout * PG_TIMEOUT_SHARE))}",
        ]
    argv += ["--max-restarts=0", f"--log-dir={log_dir}", "--redirects=3"]
    return argv + [*spec.entry, *spec.args]


def _environ_has(pid: str, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return marker in fh.read().split(b"\0")
    except OSError:
        return False


def run_processes(run_id: str) -> list[int]:
    """Pids of our processes that belong to the run (by the id in their environment)."""
    marker = f"{RUN_ID_ENV}={run_id}".encode()
    me = str(os.getpid())
    return [
        int(p)
        for p in filter(str.isdigit, os.listdir("/proc"))
        if p != me and _environ_has(p, marker)
    ]


def sweep(run_id: str, grace: float = 2.0) -> int:
    """SIGKILL every process of the run until none is left (or `grace` passes); how many."""
    killed: set[int] = set()
    end = time.monotonic() + grace
    while True:
        pids = run_processes(run_id)
        if not pids or time.monotonic() > end:
            return len(killed)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


def _read_statuses(folder: str) -> dict[int, dict]:
    out = {}
    for path in glob.glob(os.path.join(folder, "rank*.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
            out[int(doc["rank"])] = doc
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _rank_logs(log_dir: str) -> dict[int, str]:
    """The last lines of each local rank's stderr (torchrun --log-dir --redirects 3)."""
    out = {}
    for path in glob.glob(
        os.path.join(log_dir, "**", "attempt_*", "*", "stderr.log"), recursive=True
    ):
        try:
            local = int(os.path.basename(os.path.dirname(path)))
            with open(path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(path) - 4000))
                out[local] = fh.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            continue
    return out


def launch(spec: LaunchSpec) -> LaunchOutcome:
    """Run torchrun to the end or to spec.timeout; every process of the run ends with it."""
    run_id = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="gpucheck-launch-") as tmp:
        status_dir = os.path.join(tmp, "status")
        log_dir = os.path.join(tmp, "logs")
        os.makedirs(status_dir)
        env = dict(os.environ if spec.env is None else spec.env)
        env.update(spec.extra_env)
        env[RUN_ID_ENV] = run_id
        env[STATUS_DIR_ENV] = status_dir
        env.setdefault("FINETUNE_DIST_TIMEOUT", f"{max(1.0, spec.timeout * PG_TIMEOUT_SHARE):.0f}")
        env.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        if "--download" in spec.args:  # the user let the benchmark go online
            env.pop("HF_HUB_OFFLINE", None)
        else:
            env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its warning
        argv = torchrun_argv(spec, log_dir)
        t0 = time.monotonic()
        try:
            done = proc.run(argv, timeout=spec.timeout, env=env, stdout="devnull")
        finally:
            leftovers = sweep(run_id)
        statuses = _read_statuses(status_dir)
        logs = _rank_logs(log_dir)
    return classify(
        spec_world=spec.world_size,
        nproc_per_node=spec.nproc_per_node,
        nnodes=spec.nnodes,
        endpoint=spec.rdzv_endpoint,
        returncode=done.returncode,
        timed_out=done.timed_out,
        start_error=done.error if done.returncode is None and not done.timed_out else None,
        stderr=done.stderr,
        statuses=statuses,
        rank_logs=logs,
        duration_s=time.monotonic() - t0,
        timeout=spec.timeout,
        command=tuple(argv),
        leftovers=leftovers,
    )


def bench_args(json_path: str, preset: str, extra: Sequence[str]) -> tuple[str, ...]:
    """The `python -m finetune` arguments every rank gets (rank 0 writes the JSON)."""
    return ("--preset", preset, "--json", json_path, "--no-progress", "--quiet", *extra)
