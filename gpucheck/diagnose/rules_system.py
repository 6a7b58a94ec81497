"""Rules GC107-GC112, GC114: device nodes, visibility, containers, WSL2, /dev/shm.

Sources: the CUDA C Programming Guide, "CUDA Environment Variables" (CUDA_VISIBLE_DEVICES:
entries after an invalid one are ignored; CUDA_DEVICE_ORDER); NVIDIA's CUDA on WSL user guide
(no Linux driver inside WSL2); nvidia-container-toolkit documentation (--gpus); Docker's 64 MiB
default /dev/shm; nvidia-uvm: gorgonia/cu#2, ggml-org/llama.cpp#7218, ollama/ollama#8638,
NVIDIA/nvidia-docker#423.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpucheck.diagnose import facts, rule
from gpucheck.findings import Finding, Severity
from gpucheck.snapshot import Snapshot

ERROR, WARN, INFO = Severity.ERROR, Severity.WARN, Severity.INFO
GIB = 1024**3


@rule("GC107")
def container_without_gpus(s: Snapshot) -> Iterator[Finding]:
    """GC107: a container started without GPU access on a host that has one."""
    hint = facts.container_gpu_hint(s)
    if not facts.container_without_gpus(s) or hint is None:
        return
    ev = [f"container: {s.system.container}", "no /dev/nvidia* device nodes", hint]
    if s.driver.nvml_error:
        ev.append(f"NVML: {s.driver.nvml_error}")
    yield Finding(
        "GC107",
        ERROR,
        "This container was started without GPU access",
        tuple(ev),
        fix="Start it with GPUs: `docker run --gpus all ...` (Podman with CDI: `--device "
        "nvidia.com/gpu=all`; Kubernetes: `resources.limits: {nvidia.com/gpu: 1}`). The host "
        "needs nvidia-container-toolkit: `sudo nvidia-ctk runtime configure --runtime=docker "
        "&& sudo systemctl restart docker`.",
    )


@rule("GC108")
def device_nodes(s: Snapshot) -> Iterator[Finding]:
    """GC108: /dev/nvidia* nodes unreadable, NVML refused (NoPermission), or nodes missing."""
    sysinfo = s.system
    if sysinfo.os != "linux" or sysinfo.wsl:
        return
    unreadable = [
        n.path for n in sysinfo.device_nodes if n.path.startswith("/dev/nvidia") and not n.readable
    ]
    denied = s.driver.nvml_error == "NoPermission"
    missing = (
        not sysinfo.container
        and facts.host_driver_hint(s) is not None
        and not s.gpus
        and not facts.gpu_nodes(s)
        and s.driver.nvml_error in (None, "NoPermission")
        and s.driver.version is not None
    )
    if not (unreadable or denied or missing):
        return
    ev = []
    if unreadable:
        ev.append(f"not readable: {', '.join(unreadable)}")
    if denied:
        ev.append("NVML: NoPermission")
    if missing:
        ev.append("no /dev/nvidia[0-9]* device nodes although the driver is loaded")
    if sysinfo.container:
        fix = (
            "Start the container with `docker run --gpus all ...` so that nvidia-container-toolkit "
            "passes the devices with the right permissions (not `--device` by hand)."
        )
    elif missing and not unreadable:
        fix = "Create the device nodes: `sudo nvidia-modprobe -u -c=0` (or run `sudo nvidia-smi` once)."
    else:
        fix = (
            "Check `ls -l /dev/nvidia*`: the nodes must be readable and writable by you. Add "
            "yourself to the group that owns them (`sudo usermod -aG video $USER`, then log in "
            "again) or fix the udev/cgroup rule that restricts them."
        )
    yield Finding(
        "GC108",
        ERROR,
        "GPU device nodes are missing or not accessible",
        tuple(ev),
        fix=fix,
    )


@rule("GC114")
def uvm_node_missing(s: Snapshot) -> Iterator[Finding]:
    """GC114: GPUs are there but /dev/nvidia-uvm is not: CUDA init fails with 'unknown error'."""
    sysinfo = s.system
    if sysinfo.os != "linux" or sysinfo.wsl or not facts.healthy_gpus(s):
        return
    paths = {n.path for n in sysinfo.device_nodes}
    if not facts.gpu_nodes(s) or "/dev/nvidia-uvm" in paths:
        return
    # The node is created by nvidia-modprobe when CUDA first initialises after boot, which can
    # be after /dev was listed (the torch child runs meanwhile): the child's outcome decides.
    rt = s.torch_runtime
    ran = rt is not None and rt.status == "ok"
    if ran and rt.cuda_available:
        return  # CUDA initialised: the node exists now
    ev = [f"device nodes: {', '.join(sorted(paths))}"]
    if ran:
        ev.append("torch child: torch.cuda.is_available() is False")
    yield Finding(
        "GC114",
        ERROR if ran else WARN,
        "/dev/nvidia-uvm is missing: CUDA initialisation "
        + ("fails ('unknown error', 999)" if ran else "may fail ('unknown error', 999)"),
        tuple(ev),
        fix="Load the UVM module and create its node: `sudo modprobe nvidia-uvm && sudo "
        "nvidia-modprobe -u -c=0` (in a container: restart it after fixing the host).",
    )


@rule("GC109", "GC110")
def visible_devices(s: Snapshot) -> Iterator[Finding]:
    """GC109 (hides every GPU) and GC110 (an entry CUDA rejects: unknown or repeated)."""
    vis = facts.cuda_visible_devices(s)
    if vis is None:
        return
    uuids = [g.uuid for g in s.gpus if g.uuid]
    ev = [
        f"CUDA_VISIBLE_DEVICES={vis.raw!r}",
        f"NVML sees {len(s.gpus)} GPU(s): indices 0-{len(s.gpus) - 1}"
        + (f", UUIDs {', '.join(u[:12] + '...' for u in uuids)}" if uuids else ""),
    ]
    if vis.reason:
        ev.append(f"invalid: {vis.reason}")
    order = s.system.env.get("CUDA_DEVICE_ORDER")
    order_note = (
        ""
        if order == "PCI_BUS_ID"
        else " and `export CUDA_DEVICE_ORDER=PCI_BUS_ID` so that indices match nvidia-smi"
    )
    if not vis.visible:
        yield Finding(
            "GC109",
            ERROR,
            "CUDA_VISIBLE_DEVICES hides every GPU",
            tuple(ev),
            fix="`unset CUDA_VISIBLE_DEVICES`, or set it to indices below "
            f"{len(s.gpus)} or UUIDs from `nvidia-smi -L`{order_note}.",
        )
    elif vis.dropped:
        ev.append(f"CUDA keeps {', '.join(vis.visible)} and ignores {', '.join(vis.dropped)}")
        repeated = (vis.reason or "").endswith(": repeated")
        yield Finding(
            "GC110",
            WARN,
            "CUDA_VISIBLE_DEVICES names a GPU twice; the entries from the repeat on are ignored"
            if repeated
            else "CUDA_VISIBLE_DEVICES names a GPU that does not exist; the entries from it on "
            "are ignored",
            tuple(ev),
            fix=f"Set only existing indices (0-{len(s.gpus) - 1}) or UUIDs from `nvidia-smi -L`{order_note}.",
        )


@rule("GC111")
def wsl_linux_driver(s: Snapshot) -> Iterator[Finding]:
    """GC111: a Linux NVIDIA driver installed inside WSL2 shadows the one Windows provides."""
    sysinfo = s.system
    if not sysinfo.wsl or not sysinfo.linux_driver_in_wsl:
        return
    files = sysinfo.linux_driver_in_wsl
    yield Finding(
        "GC111",
        ERROR,
        "A Linux NVIDIA driver is installed inside WSL2 and overrides the Windows driver's libcuda",
        (f"WSL2 kernel {sysinfo.kernel or '?'}", f"Linux driver files: {', '.join(files[:4])}"),
        fix="Remove the Linux driver from WSL (`sudo apt-get remove --purge '^nvidia-driver-.*' "
        "'^libnvidia-.*'`), run `wsl --shutdown` in Windows and reopen. In WSL install only a "
        "CUDA toolkit from the WSL-Ubuntu repository (`cuda-toolkit-X-Y`, never `cuda` or "
        "`cuda-drivers`); update the driver on the Windows side.",
    )


@rule("GC112")
def small_shm(s: Snapshot) -> Iterator[Finding]:
    """GC112: /dev/shm too small for DataLoader workers (Docker's default is 64 MiB)."""
    shm = s.system.shm_bytes
    if not s.system.container or shm is None or shm >= GIB:
        return
    yield Finding(
        "GC112",
        WARN,
        f"/dev/shm is only {shm / 2**20:.0f} MiB in this container",
        (f"container: {s.system.container}", f"/dev/shm: {shm} bytes"),
        fix="DataLoader workers and NCCL pass data through /dev/shm and fail with 'bus error' "
        "when it fills: start the container with `--shm-size=8g` or `--ipc=host` (Kubernetes: "
        "an emptyDir with `medium: Memory` mounted at /dev/shm).",
    )
