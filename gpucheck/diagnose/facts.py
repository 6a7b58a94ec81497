"""Small shared facts and predicates for the diagnose rules. Pure: no I/O, no torch, no NVML.

The driver minimums (NVIDIA Table 3 GA rows and Table 2 minor-version-compatibility floors)
and the arch-list fallback (torch release matrix) are looked up in the built-in compat table,
`gpucheck.compat.load_table()`: sourced, loaded once, pure data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpucheck import compat
from gpucheck.snapshot import Gpu, Snapshot
from gpucheck.versions import Version, driver_core, major_minor
from gpucheck.versions import lenient as vtuple
from gpucheck.versions import nvidia as _nv
from gpucheck.versions import plain as fmt  # noqa: F401  (facts.fmt in the rules)

# Versions are parsed and written by gpucheck.versions (the one parser): vtuple, fmt, _nv.

# --- NVIDIA driver vs CUDA ------------------------------------------------------------------


def _ga_rows(os_name: str | None) -> list[tuple[tuple[int, int], Version | None]]:
    """(CUDA, full-feature driver minimum) per GA toolkit row; where NVIDIA gives no Windows
    value (13.x), the Linux one."""
    col = "windows" if os_name == "windows" else "linux"
    rows = compat.load_table().toolkits
    return [(r.cuda, getattr(r, col) or r.linux) for r in rows if r.release == "GA"]


def ga_driver_min(cuda: tuple[int, int], os_name: str | None) -> str | None:
    """Full-feature driver minimum for a CUDA minor release (or the nearest older one known)."""
    known = [(c, v) for c, v in _ga_rows(os_name) if c[0] == cuda[0] and c <= cuda]
    v = max(known)[1] if known else None
    return _nv(v) if v else None


def mvc_floor(major: int, os_name: str | None) -> str | None:
    v = compat.load_table().mvc_driver(major, os_name or "linux")
    return _nv(v) if v else None


def max_cuda_for_driver(driver: str | None, os_name: str | None) -> tuple[int, int] | None:
    """Highest CUDA (major, minor) whose GA driver minimum this driver meets (Table 3).

    Only CUDA majors with a minor-version-compatibility floor (11.x and newer) count.
    """
    d = driver_core(driver)
    if d is None:
        return None
    mvc = compat.load_table().mvc
    fits = [c for c, v in _ga_rows(os_name) if c[0] in mvc and v is not None and d >= v]
    return max(fits, default=None)


@dataclass(frozen=True)
class DriverFit:
    """How a driver fits the CUDA a torch build was made for."""

    verdict: str  # "full" | "mvc" | "too-old" | "unknown"
    driver: str | None
    driver_cuda: tuple[int, int] | None  # highest CUDA the driver supports
    torch_cuda: tuple[int, int]
    floor: str | None  # minor-version-compatibility floor of torch's CUDA major
    full_min: str | None  # full-feature minimum for torch's CUDA (Table 3)


def driver_fit(snapshot: Snapshot) -> DriverFit | None:
    """None when torch is not a CUDA build or nothing is known about the driver."""
    tc = major_minor(torch_cuda(snapshot))
    if tc is None:
        return None
    d = snapshot.driver
    os_name = snapshot.system.os
    driver = d.version or d.kernel_module_version
    dc = major_minor(d.cuda_version) or max_cuda_for_driver(driver, os_name)
    if driver is None and dc is None:
        return None
    floor = mvc_floor(tc[0], os_name)
    full_min = ga_driver_min(tc, os_name)
    dv, fv = driver_core(driver), vtuple(floor)
    if dc is not None and dc >= tc:
        verdict = "full"
    elif dc is not None and dc[0] < tc[0]:
        verdict = "too-old"  # a newer CUDA major than the driver knows
    elif dv is not None and fv is not None:
        verdict = "mvc" if dv >= fv else "too-old"
    else:
        verdict = "too-old" if dc is not None else "unknown"
    return DriverFit(verdict, driver, dc, tc, floor, full_min)


# --- compute capability and arch lists ------------------------------------------------------


def capability(text: str | None) -> tuple[int, int] | None:
    """ "8.6" -> (8, 6); "12.0" -> (12, 0)."""
    return major_minor(text)


@dataclass(frozen=True)
class Arch:
    kind: str  # "sm" (cubin) | "compute" (PTX)
    cc: tuple[int, int]
    exact: bool = False  # "sm_90a": arch-specific, runs on exactly that CC


def parse_arch(entry: str) -> Arch | None:
    """ "sm_86" -> cubin 8.6; "sm_120" -> cubin 12.0; "compute_90" -> PTX 9.0; "sm_90a" exact."""
    m = re.fullmatch(r"(sm|compute)_(\d+)([af]?)", entry.strip())
    if not m:
        return None
    n = int(m.group(2))
    return Arch(m.group(1), (n // 10, n % 10), exact=m.group(3) == "a")


def arch_runs(cc: tuple[int, int], arch_list: tuple[str, ...] | list[str]) -> str | None:
    """How a GPU of capability `cc` runs a build with `arch_list`: "cubin", "ptx" or None.

    A cubin for sm_X.y runs on the same major X with minor >= y; PTX compute_X.Y JIT-compiles
    for any CC >= X.Y (NVIDIA CUDA compatibility guide: binary and PTX compatibility).
    """
    archs = [a for a in (parse_arch(e) for e in arch_list) if a is not None]
    if any(a.kind == "sm" and a.exact and a.cc == cc for a in archs):
        return "cubin"
    code = compat.ArchList(
        tuple(a.cc for a in archs if a.kind == "sm" and not a.exact),
        tuple(a.cc for a in archs if a.kind == "compute"),
    )
    if code.runs_on(cc, ptx_ok=False):
        return "cubin"
    return "ptx" if code.via_ptx_only(cc) else None


def min_arch(arch_list: tuple[str, ...] | list[str]) -> tuple[int, int] | None:
    ccs = [a.cc for a in (parse_arch(e) for e in arch_list) if a is not None]
    return min(ccs) if ccs else None


@dataclass(frozen=True)
class ArchList:
    archs: tuple[str, ...]
    source: str  # "torch child" | "release matrix (torch X, cuXYZ)"
    measured: bool


def arch_list(snapshot: Snapshot) -> ArchList | None:
    """torch's arch list: from the child when it ran, else the release matrix when known."""
    rt = snapshot.torch_runtime
    if rt is not None and rt.status == "ok" and rt.arch_list:
        return ArchList(rt.arch_list, "torch child (torch.cuda.get_arch_list())", True)
    t = snapshot.torch
    if not is_pip_cuda_torch(snapshot) or snapshot.system.os != "linux":
        return None
    if snapshot.system.arch != "x86_64":
        return None
    tv, tc = major_minor(t.version), major_minor(t.cuda)
    if tv is None or tc is None:
        return None
    variant = f"cu{tc[0]}{tc[1]}"
    release = compat.load_table().release(f"{tv[0]}.{tv[1]}")
    v = release.variant(variant) if release else None
    code = v.arch_for("linux-x86_64") if v else None
    if code is None:
        return None
    archs = tuple(code.describe().split())
    return ArchList(archs, f"release matrix (torch {tv[0]}.{tv[1]} {variant})", False)


# --- torch ----------------------------------------------------------------------------------


def torch_cuda(snapshot: Snapshot) -> str | None:
    """The CUDA torch was built for: static metadata first, else what the child saw."""
    if snapshot.torch.cuda:
        return snapshot.torch.cuda
    rt = snapshot.torch_runtime
    return rt.cuda_version if rt is not None and rt.status == "ok" else None


def torch_version(snapshot: Snapshot) -> str | None:
    rt = snapshot.torch_runtime
    return snapshot.torch.version or (rt.version if rt is not None else None)


def torch_installed(snapshot: Snapshot) -> bool:
    rt = snapshot.torch_runtime
    return snapshot.torch.installed or (
        rt is not None and rt.status not in ("not-installed", "skipped")
    )


def is_cpu_torch(snapshot: Snapshot) -> bool:
    """Installed torch that has neither CUDA nor ROCm in it (a "+cpu" build or alike)."""
    t = snapshot.torch
    if not torch_installed(snapshot):
        return False
    if t.local == "cpu":
        return True
    if t.cuda or t.hip:
        return False
    rt = snapshot.torch_runtime
    if rt is not None and rt.status == "ok":
        return not rt.cuda_version and not rt.hip_version
    # Static metadata only (torch/version.py has cuda = None): trust it when it read cleanly.
    return t.version is not None and t.error is None


def is_rocm_torch(snapshot: Snapshot) -> bool:
    rt = snapshot.torch_runtime
    return bool(snapshot.torch.hip or (rt is not None and rt.hip_version)) or bool(
        snapshot.torch.local and snapshot.torch.local.startswith("rocm")
    )


def is_pip_cuda_torch(snapshot: Snapshot) -> bool:
    """A CUDA wheel from PyPI or the PyTorch index: it bundles CUDA runtime and cuDNN as
    `nvidia-*` wheels (or, for old wheels, inside torch/lib). conda-forge builds have neither
    a `+cuXYZ` tag nor `nvidia-*` wheels."""
    t = snapshot.torch
    if not torch_cuda(snapshot):
        return False
    return bool(t.nvidia_wheels) or bool(t.local and t.local.startswith("cu"))


def has_cudnn_wheel(snapshot: Snapshot) -> bool:
    return any(p.name.startswith("nvidia-cudnn") for p in snapshot.torch.nvidia_wheels)


def cudnn_wheel_version(snapshot: Snapshot) -> str | None:
    for p in snapshot.torch.nvidia_wheels:
        if p.name.startswith("nvidia-cudnn"):
            return p.version
    return None


def is_wheel_lib_path(path: str) -> bool:
    """A library inside a pip `nvidia-*` wheel (site-packages/nvidia/<pkg>/lib/...)."""
    return bool(re.search(r"[/\\](site|dist)-packages[/\\]nvidia[/\\]", path))


# --- GPUs, visibility, containers -----------------------------------------------------------


def healthy_gpus(snapshot: Snapshot) -> tuple[Gpu, ...]:
    return tuple(g for g in snapshot.gpus if g.error is None)


def nvidia_present(snapshot: Snapshot) -> bool:
    """Some sign of an NVIDIA GPU: NVML sees one, or one sits on the PCI bus."""
    return bool(snapshot.gpus) or bool(snapshot.system.nvidia_pci_devices)


def gpu_nodes(snapshot: Snapshot) -> tuple[str, ...]:
    """/dev/nvidia0, /dev/nvidia1, ... (not nvidiactl, nvidia-uvm, nvidia-caps)."""
    return tuple(
        n.path for n in snapshot.system.device_nodes if re.fullmatch(r"/dev/nvidia\d+", n.path)
    )


def container_without_gpus(snapshot: Snapshot) -> bool:
    """Inside a container that was started with no NVIDIA device nodes."""
    s = snapshot.system
    return bool(s.container) and not gpu_nodes(snapshot) and not snapshot.gpus and not s.wsl


def container_gpu_hint(snapshot: Snapshot) -> str | None:
    """In a container without GPUs: a sign that the host has one (or the image expects one)."""
    hint = host_driver_hint(snapshot)
    if hint:
        return hint.replace("is loaded", "is loaded on the host")
    nvd = snapshot.system.env.get("NVIDIA_VISIBLE_DEVICES")
    if nvd and nvd.strip().lower() not in ("void", "none", ""):
        return f"NVIDIA_VISIBLE_DEVICES={nvd} (the image expects GPUs)"
    return None


def host_driver_hint(snapshot: Snapshot) -> str | None:
    """Why we believe a driver (and so a GPU) exists even though NVML does not work."""
    s, d = snapshot.system, snapshot.driver
    if d.kernel_module_version:
        return f"NVIDIA kernel module {d.kernel_module_version} is loaded (/proc/driver/nvidia/version)"
    if s.nvidia_module_loaded:
        return "the nvidia kernel module is loaded (/proc/modules)"
    return None


@dataclass(frozen=True)
class Visibility:
    raw: str
    visible: tuple[str, ...]  # the entries CUDA keeps, in order
    dropped: tuple[str, ...]  # the first invalid entry and everything after it
    reason: str | None  # why the first dropped entry is invalid


def cuda_visible_devices(snapshot: Snapshot) -> Visibility | None:
    """Validate CUDA_VISIBLE_DEVICES against the GPUs NVML sees.

    CUDA keeps the entries up to the first invalid one (an index past the count, an unknown
    UUID, a repeat) and drops the rest; an empty value hides every device. UUIDs may be given
    as a unique prefix including "GPU-" (NVIDIA MPS docs); MIG devices as "MIG-<uuid>".
    None when the variable is unset or NVML saw no GPUs (nothing to validate against).
    """
    raw = snapshot.system.env.get("CUDA_VISIBLE_DEVICES")
    if raw is None or not snapshot.gpus:
        return None
    entries = [e.strip() for e in raw.split(",")] if raw.strip() else []
    uuids = [g.uuid for g in snapshot.gpus if g.uuid]
    mig_known = [m for g in snapshot.gpus for m in (g.mig_devices or ())]
    mig_probed = any(g.mig_devices is not None for g in snapshot.gpus if g.mig_enabled)
    seen: list[str] = []
    for i, e in enumerate(entries):
        reason = _invalid_entry(e, len(snapshot.gpus), uuids, mig_known, mig_probed, snapshot)
        key = e.lower()
        if reason is None and key in seen:
            reason = "repeated"
        if reason is not None:
            return Visibility(raw, tuple(entries[:i]), tuple(entries[i:]), f"{e!r}: {reason}")
        seen.append(key)
    if not entries:
        return Visibility(raw, (), (), "empty value")
    return Visibility(raw, tuple(entries), (), None)


def _invalid_entry(
    e: str,
    count: int,
    uuids: list[str],
    mig_known: list[str],
    mig_probed: bool,
    snapshot: Snapshot,
) -> str | None:
    low = e.lower()
    if low.startswith("mig-"):
        if not any(g.mig_enabled for g in snapshot.gpus):
            return "a MIG device, but no GPU has MIG enabled"
        if mig_probed and not any(m.lower().startswith(low) for m in mig_known):
            return "no such MIG device"
        return None
    if low.startswith("gpu-"):
        if not uuids:
            return None  # UUIDs unknown: cannot judge
        hits = [u for u in uuids if u.lower().startswith(low)]
        if not hits:
            return "no GPU has this UUID"
        if len(hits) > 1:
            return "ambiguous UUID prefix"
        return None
    m = re.match(r"\d+", e)
    if not m:
        return "not an index or a UUID"
    if int(m.group(0)) >= count:
        return f"index past the {count} GPU(s) NVML sees"
    return None


# --- CUDA device <-> NVML GPU ----------------------------------------------------------------


def _uuid_key(text: str | None) -> str | None:
    if not text:
        return None
    low = text.strip().lower()
    return low[4:] if low.startswith(("gpu-", "mig-")) else low


def _bus_key(text: str | None) -> tuple[int, ...] | None:
    """ "00000000:18:00.0" and "0000:18:00.0" -> (0, 0x18, 0, 0)."""
    m = re.fullmatch(
        r"\s*([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-9a-fA-F])\s*", text or ""
    )
    return tuple(int(p, 16) for p in m.groups()) if m else None


def nvml_gpu_for_cuda(snapshot: Snapshot, cuda_index: int) -> Gpu | None:
    """The NVML GPU behind torch's `cuda:N`, joined on UUID, else on PCI bus id.

    CUDA numbers devices after CUDA_VISIBLE_DEVICES and fastest first unless
    CUDA_DEVICE_ORDER=PCI_BUS_ID (CUDA C Programming Guide, "CUDA Environment Variables"),
    while NVML and nvidia-smi number them in PCI bus order: `cuda:N` is not GPU N. Without
    UUID or bus id, only a machine with one GPU and one CUDA device is joined.
    """
    rt = snapshot.torch_runtime
    dev = next((d for d in (rt.devices if rt else ()) if d.index == cuda_index), None)
    if dev is not None:
        key = _uuid_key(dev.uuid)
        if key:
            hit = [
                g
                for g in snapshot.gpus
                if key in {_uuid_key(u) for u in (g.uuid, *(g.mig_devices or ()))}
            ]
            if hit:
                return hit[0]
        bus = _bus_key(dev.pci_bus_id)
        if bus:
            hit = [g for g in snapshot.gpus if _bus_key(g.pci_bus_id) == bus]
            if hit:
                return hit[0]
    n_cuda = len(rt.devices) if rt and rt.devices else (rt.device_count if rt else None)
    if len(snapshot.gpus) == 1 and n_cuda == 1 and cuda_index == 0:
        return snapshot.gpus[0]
    return None


def nvml_index(snapshot: Snapshot, cuda_index: int) -> int | None:
    g = nvml_gpu_for_cuda(snapshot, cuda_index)
    return g.index if g is not None else None


def cuda_label(snapshot: Snapshot, cuda_index: int) -> str:
    """ "cuda:1 (GPU 3)" when the NVML index is known and differs, else "cuda:1"."""
    i = nvml_index(snapshot, cuda_index)
    return (
        f"cuda:{cuda_index} (GPU {i})"
        if i is not None and i != cuda_index
        else f"cuda:{cuda_index}"
    )


# --- Jetson ------------------------------------------------------------------------------------

# Integrated GPUs of the Jetson modules (TX1, TX2, Xavier, Orin): CUDA GPUs compute capability
# table, developer.nvidia.com/cuda-gpus.
TEGRA_CAPABILITIES = ("5.3", "6.2", "7.2", "8.7")


def is_tegra(snapshot: Snapshot) -> bool:
    """A Jetson/Tegra board: the system probe says so, or torch saw an integrated Tegra GPU."""
    if snapshot.system.tegra:
        return True
    rt = snapshot.torch_runtime
    return bool(rt) and any(
        d.capability in TEGRA_CAPABILITIES
        or any(w in (d.name or "").lower() for w in ("tegra", "orin", "xavier"))
        for d in rt.devices
    )
