"""Collect the node figures: the node child (torch, with a timeout), NVML topology, host facts.

`combine` is pure (child JSON + topology + host facts -> NodeFigures), so tests feed it
recorded values; `collect_figures` is the side-effecting part.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

from gpucheck import proc
from gpucheck.node import sysfs
from gpucheck.node.figures import AllReduce, Bridge, GpuFigures, NodeFigures
from gpucheck.node.topology import Topology, bus_id, probe_topology

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_node_child.py")
MARKER = "gpucheck_node_child"
# Smaller sizes for `gpucheck node --fast`: a Slurm HealthCheckProgram is killed after 60 s.
FAST_SETTINGS = {
    "allreduce_sizes": [1 << 20, 1 << 26],
    "p2p_bytes": 1 << 24,
    "h2d_bytes": 1 << 26,
    "iters": 3,
}


def parse_child_output(stdout: str) -> dict[str, Any] | None:
    """The child's last complete progress line (it prints one after every stage)."""
    return proc.last_marked_json(stdout, MARKER)


def run_node_child(
    python: str, timeout: float, settings: Mapping[str, Any] | None = None, env=None
) -> tuple[dict[str, Any] | None, str, str | None, float]:
    """(last figures, status, error, seconds); status ok | timeout | crash | no-torch."""
    argv = [python, CHILD, json.dumps(dict(settings or {}))]
    done = proc.run(argv, timeout=timeout, env=env)
    data = parse_child_output(done.stdout)
    tail = done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else []
    if done.timed_out:
        stage = (data or {}).get("stage", "starting")
        return data, "timeout", f"no answer within {timeout:g} s, hung in: {stage}", done.seconds
    if data is None or data.get("stage") != "done":
        stage = (data or {}).get("stage", "starting")
        why = done.error or (tail[0] if tail else f"exit status {done.returncode}")
        if data is not None and data.get("status") == "no-torch":
            return data, "no-torch", data.get("error"), done.seconds
        return data, "crash", f"died in: {stage}: {why}", done.seconds
    return data, "ok", None, done.seconds


def _gpu(child_gpu: dict | None, nvml_gpu: dict | None, index: int) -> GpuFigures:
    merged: dict[str, Any] = {"index": index}
    merged.update({k: v for k, v in (nvml_gpu or {}).items() if v is not None})
    for k, v in (child_gpu or {}).items():
        if (
            k != "index"
            and v is not None
            and (k not in merged or k.endswith(("_gbps", "_tflops", "_dtype", "error")))
        ):
            merged[k] = v
    merged["index"] = index
    return GpuFigures.from_dict(merged)


def combine(
    child: dict[str, Any] | None,
    child_status: str,
    child_error: str | None,
    topo: Topology,
    *,
    host: str | None,
    env: Mapping[str, str],
    interfaces: tuple[str, ...] = (),
    shm_bytes: int | None = None,
    in_container: bool = False,
    bridges: list[dict] | None = None,
    acs_readable: bool | None = None,
    iommu_modes: Mapping[str, str] | None = None,
    duration_s: float | None = None,
) -> NodeFigures:
    child = child or {}
    cgpus = [g for g in child.get("gpus") or () if isinstance(g, dict)]
    by_bus = {g.get("pci_bus_id"): g for g in cgpus if g.get("pci_bus_id")}
    gpus = []
    if topo.gpus:  # NVML's numbering (PCI order); the child's figures matched by bus id
        for g in topo.gpus:
            c = by_bus.get(g.get("pci_bus_id"))
            if c is None and not by_bus and g["index"] < len(cgpus):
                c = cgpus[g["index"]]
            gpus.append(_gpu(c, g, g["index"]))
    else:
        gpus = [_gpu(c, None, i) for i, c in enumerate(cgpus)]
    p2p = child.get("p2p") if isinstance(child.get("p2p"), list) else []
    ar = [a for a in (AllReduce.from_dict(x) for x in child.get("allreduce") or ()) if a]
    cuda = child.get("cuda_available")
    return NodeFigures(
        host=host,
        gpus=tuple(gpus),
        p2p=tuple(tuple(x if isinstance(x, bool) else None for x in row) for row in p2p),
        p2p_copy_gbps=dict(child.get("p2p_copy_gbps") or {}),
        p2p_copy_errors=dict(child.get("p2p_copy_errors") or {}),
        topology=dict(topo.pairs),
        allreduce=tuple(ar),
        allreduce_error=child.get("allreduce_error"),
        nccl_version=child.get("nccl_version"),
        torch_version=child.get("torch_version"),
        cuda_available=cuda if isinstance(cuda, bool) else None,
        env=sysfs.nccl_env(env),
        interfaces=tuple(interfaces),
        shm_bytes=shm_bytes,
        in_container=in_container,
        bridges=tuple(
            Bridge(b["bdf"], tuple(b.get("acs_ctl") or ()), tuple(b.get("gpus") or ()))
            for b in bridges or ()
        ),
        acs_readable=acs_readable,
        iommu_modes=dict(iommu_modes or {}),
        child_status=child_status,
        child_error=child_error,
        nvml_error=topo.error,
        duration_s=duration_s,
    )


def collect_figures(
    *,
    python: str = sys.executable,
    timeout: float = 50.0,
    nvml_timeout: float = 10.0,
    fast: bool = False,
    root: str = "/",
    env: Mapping[str, str] | None = None,
    in_container: bool = False,
) -> NodeFigures:
    """Measure this node. The child starts first so that NVML and sysfs reads overlap it."""
    t0 = time.monotonic()
    env = dict(os.environ if env is None else env)
    settings = FAST_SETTINGS if fast else None
    box: dict[str, Any] = {}

    import threading

    def child() -> None:
        box["child"] = run_node_child(python, timeout, settings, env)

    worker = threading.Thread(target=child, name="gpucheck-node-child", daemon=True)
    worker.start()
    topo = probe_topology(nvml_timeout)
    bdfs = [g["pci_bus_id"] for g in topo.gpus if g.get("pci_bus_id")]
    bridges, readable = sysfs.bridges_above(bdfs, root) if len(bdfs) > 1 else ([], None)
    iommu = {b: m for b in bdfs if (m := sysfs.iommu_mode(b, root))}
    worker.join(timeout + 5)  # the child has its own timeout; this is only a backstop
    data, status, error, _ = box.get("child") or (None, "timeout", "no answer", 0.0)
    return combine(
        data,
        status,
        error,
        topo,
        host=socket.gethostname(),
        env=env,
        interfaces=sysfs.interfaces(root),
        shm_bytes=sysfs.shm_bytes(root),
        in_container=in_container,
        bridges=bridges,
        acs_readable=readable,
        iommu_modes=iommu,
        duration_s=round(time.monotonic() - t0, 3),
    )


def host_figures(snapshot, *, root: str = "/", env: Mapping[str, str] | None = None) -> NodeFigures:
    """The node figures that need no torch child (NVML topology, sysfs, lspci, environment):
    what `gpucheck check` judges on a multi-GPU machine in well under a second."""
    topo = probe_topology(5.0)
    if not topo.gpus:  # NVML topology unreadable: the snapshot's GPUs still name the models
        topo.gpus = [
            {"index": g.index, "name": g.name, "pci_bus_id": g.pci_bus_id and bus_id(g.pci_bus_id)}
            for g in snapshot.gpus
        ]
    bdfs = [g["pci_bus_id"] for g in topo.gpus if g.get("pci_bus_id")]
    bridges, readable = sysfs.bridges_above(bdfs, root) if len(bdfs) > 1 else ([], None)
    return combine(
        None,
        "not-run",
        None,
        topo,
        host=socket.gethostname(),
        env=dict(os.environ if env is None else env),
        interfaces=sysfs.interfaces(root),
        shm_bytes=sysfs.shm_bytes(root),
        in_container=bool(snapshot.system.container),
        bridges=bridges,
        acs_readable=readable,
        iommu_modes={b: m for b in bdfs if (m := sysfs.iommu_mode(b, root))},
    )


def host_findings(snapshot) -> list:
    """GC6xx from host_figures, on machines with 2 or more GPUs (else nothing to judge)."""
    if len(snapshot.gpus) < 2:
        return []
    from gpucheck.node.judge import judge

    return judge(host_figures(snapshot))
