"""The host: OS, Python, container/WSL markers, kernel modules, device nodes, environment."""

from __future__ import annotations

import glob
import os
import platform
import sys
from collections.abc import Mapping

from gpucheck.probe._util import read_text, rooted
from gpucheck.probe.parsers import (
    parse_kfd_gfx,
    parse_meminfo_total,
    parse_os_release,
    parse_proc_modules,
)
from gpucheck.probe.pyenv import PyEnv
from gpucheck.snapshot import DeviceNode, LibDir, PythonInfo, System

# Variables that change which GPUs or libraries CUDA and torch use.
ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "CUDA_DEVICE_ORDER",
    "CUDA_HOME",
    "CUDA_PATH",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "PYTORCH_CUDA_ALLOC_CONF",
    "CUDA_MODULE_LOADING",
    # TF32 overrides: TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 (set in NVIDIA's PyTorch containers)
    # makes cuBLAS use TF32 whatever torch's allow_tf32 says; NVIDIA_TF32_OVERRIDE=0 turns it off.
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "NVIDIA_TF32_OVERRIDE",
)
# Variables DCGM's level-1 "Environment Variables" check fails on (DCGM_FR_BAD_CUDA_ENV,
# nvvs/src/Software.cpp), plus CUDA_LAUNCH_BLOCKING, which serialises every kernel launch.
BAD_CUDA_ENV = (
    "NSIGHT_CUDA_DEBUGGER",
    "CUDA_INJECTION32_PATH",
    "CUDA_INJECTION64_PATH",
    "CUDA_AUTO_BOOST",
    "CUDA_ENABLE_COREDUMP_ON_EXCEPTION",
    "CUDA_COREDUMP_FILE",
    "CUDA_DEVICE_WAITS_ON_EXCEPTION",
    "CUDA_PROFILE",
    "COMPUTE_PROFILE",
    "OPENCL_PROFILE",
    "CUDA_LAUNCH_BLOCKING",
)
# Library name prefixes that make an LD_LIBRARY_PATH entry worth reporting.
CUDA_LIB_PREFIXES = ("libcuda", "libcudart", "libcudnn", "libcublas", "libnvJitLink")

_OS_NAMES = {"linux": "linux", "win32": "windows", "darwin": "macos"}
_CGROUP_MARKERS = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("docker", "docker"),
    ("containerd", "containerd"),
    ("lxc", "lxc"),
)


def probe_system(root: str, env: Mapping[str, str], pyenv: PyEnv) -> System:
    """Everything in `System`; never raises for missing or unreadable files."""
    os_release = parse_os_release(read_text(rooted(root, "/etc/os-release")) or "")
    proc_version = read_text(rooted(root, "/proc/version")) or ""
    wsl = "microsoft" in proc_version.lower() or os.path.isdir(rooted(root, "/usr/lib/wsl/lib"))
    modules = _modules(root)
    return System(
        os=_OS_NAMES.get(sys.platform, sys.platform),
        arch=platform.machine() or "unknown",
        distro=os_release.get("PRETTY_NAME") or os_release.get("NAME"),
        kernel=_kernel(root),
        glibc=_glibc(),
        python=_python_info(pyenv, env),
        container=detect_container(root, env),
        wsl=wsl,
        nouveau_loaded=None if modules is None else "nouveau" in modules,
        nvidia_module_loaded=None if modules is None else "nvidia" in modules,
        device_nodes=device_nodes(root),
        env={k: env[k] for k in (*ENV_VARS, *BAD_CUDA_ENV) if k in env},
        ld_library_path=ld_library_dirs(root, env),
        shm_bytes=_shm_bytes(root),
        cpu_count=_cpu_count(),
        memory_bytes=parse_meminfo_total(read_text(rooted(root, "/proc/meminfo")) or ""),
        linux_driver_in_wsl=linux_driver_in_wsl(root) if wsl else (),
        nvidia_pci_devices=nvidia_pci_devices(root),
        amd_gfx=amd_gfx(root),
        tegra=tegra(root),
    )


def _kernel(root: str) -> str | None:
    text = read_text(rooted(root, "/proc/sys/kernel/osrelease"))
    if text and text.strip():
        return text.strip()
    if root in ("", "/"):
        return platform.release() or None
    return None


def _glibc() -> str | None:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    if not value:
        return None
    return value.split()[-1]


def _python_info(pyenv: PyEnv, env: Mapping[str, str]) -> PythonInfo:
    venv = None
    if pyenv.prefix and pyenv.base_prefix and pyenv.prefix != pyenv.base_prefix:
        venv = pyenv.prefix
    return PythonInfo(
        version=pyenv.version or "unknown",
        executable=pyenv.executable,
        implementation=pyenv.implementation or "unknown",
        venv=venv,
        conda_env=env.get("CONDA_PREFIX") or None,
    )


def detect_container(root: str, env: Mapping[str, str]) -> str | None:
    """ "kubernetes" | "podman" | "docker" | ... from the usual markers, else None."""
    if env.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if os.path.exists(rooted(root, "/run/.containerenv")):
        return "podman"
    if os.path.exists(rooted(root, "/.dockerenv")):
        return "docker"
    cgroup = read_text(rooted(root, "/proc/1/cgroup")) or ""
    for marker, name in _CGROUP_MARKERS:
        if marker in cgroup:
            return name
    return None


def _modules(root: str) -> set[str] | None:
    text = read_text(rooted(root, "/proc/modules"))
    if text is not None:
        return parse_proc_modules(text)
    # No /proc/modules (e.g. a kernel without module support): /sys/module lists loaded ones.
    sys_module = rooted(root, "/sys/module")
    try:
        return set(os.listdir(sys_module))
    except OSError:
        return None


def device_nodes(root: str) -> tuple[DeviceNode, ...]:
    """/dev/nvidia* (and /dev/nvidia-caps/*) with whether we may open them."""
    dev = rooted(root, "/dev")
    paths = sorted(glob.glob(os.path.join(dev, "nvidia*")))
    paths += sorted(glob.glob(os.path.join(dev, "nvidia-caps", "*")))
    nodes = []
    for path in paths:
        if os.path.isdir(path):
            continue
        shown = "/dev/" + os.path.relpath(path, dev)
        nodes.append(
            DeviceNode(
                path=shown,
                readable=os.access(path, os.R_OK),
                writable=os.access(path, os.W_OK),
            )
        )
    return tuple(nodes)


def ld_library_dirs(root: str, env: Mapping[str, str]) -> tuple[LibDir, ...]:
    """LD_LIBRARY_PATH entries that hold CUDA-family libraries, in search order."""
    result = []
    seen = set()
    for entry in env.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if not entry or entry in seen:
            continue
        seen.add(entry)
        try:
            names = os.listdir(rooted(root, entry) if os.path.isabs(entry) else entry)
        except OSError:
            continue
        libs = sorted(n for n in names if ".so" in n and n.startswith(CUDA_LIB_PREFIXES))
        if libs:
            result.append(LibDir(path=entry, libraries=tuple(libs)))
    return tuple(result)


def linux_driver_in_wsl(root: str) -> tuple[str, ...]:
    """Files of a Linux NVIDIA driver installed inside WSL2 (which overrides the injected one)."""
    found: list[str] = []
    for libdir in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64"):
        base = rooted(root, libdir)
        for pattern in ("libcuda.so*", "libnvidia-ml.so*"):
            for path in sorted(glob.glob(os.path.join(base, pattern))):
                found.append(libdir + "/" + os.path.basename(path))
    if os.path.exists(rooted(root, "/proc/driver/nvidia/version")):
        found.append("/proc/driver/nvidia/version")
    return tuple(found)


def nvidia_pci_devices(root: str) -> tuple[str, ...] | None:
    """PCI addresses of NVIDIA (vendor 0x10de) display or 3D controllers (class 0x03xxxx).

    None when /sys/bus/pci is not there to read (WSL2, some containers): unknown, not "none".
    """
    base = rooted(root, "/sys/bus/pci/devices")
    try:
        addresses = sorted(os.listdir(base))
    except OSError:
        return None
    found = []
    for address in addresses:
        vendor = (read_text(os.path.join(base, address, "vendor"), 64) or "").strip().lower()
        pci_class = (read_text(os.path.join(base, address, "class"), 64) or "").strip().lower()
        if vendor == "0x10de" and pci_class.startswith("0x03"):
            found.append(address)
    return tuple(found)


def amd_gfx(root: str) -> tuple[str, ...]:
    """gfx targets of the AMD GPUs the amdgpu driver exposes (one per GPU, sorted)."""
    pattern = rooted(root, "/sys/class/kfd/kfd/topology/nodes/*/properties")
    found = [parse_kfd_gfx(read_text(path, 65536) or "") for path in sorted(glob.glob(pattern))]
    return tuple(sorted(g for g in found if g))


def _shm_bytes(root: str) -> int | None:
    try:
        st = os.statvfs(rooted(root, "/dev/shm"))
    except OSError:
        return None
    return st.f_frsize * st.f_blocks


def _cpu_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))  # honours cgroup/taskset limits, unlike cpu_count
    except (AttributeError, OSError):
        return os.cpu_count()


def tegra(root: str) -> str | None:
    """What marks this as an NVIDIA Jetson (Tegra) board, or None.

    L4T writes /etc/nv_tegra_release ("# R36 (release), REVISION: 3.0, GCID: ..."); the device
    tree names the SoC ("nvidia,tegra234"; Linux Documentation/devicetree/bindings/arm/
    tegra.yaml). Jetson has no NVML and no PCI GPU: the torch child is the only CUDA witness.
    """
    release = read_text(rooted(root, "/etc/nv_tegra_release"), 4096)
    if release and release.strip():
        first = release.strip().splitlines()[0].lstrip("# ").strip()
        return ", ".join(first.split(", ")[:2]) + " (/etc/nv_tegra_release)"
    compatible = read_text(rooted(root, "/proc/device-tree/compatible"), 4096) or ""
    socs = [c for c in compatible.split("\x00") if c.startswith("nvidia,tegra")]
    if socs:
        return f"{socs[-1]} (/proc/device-tree/compatible)"
    return None
