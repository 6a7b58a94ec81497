"""The machine a recommendation is for: from a Snapshot, with overrides from flags."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from gpucheck.compat import CompatTable, load_table, parse_cc

_AMD_HINT = re.compile(r"\b(amd|radeon|instinct|mi\d{2,3}[a-z]?)\b", re.I)
_INTEL_HINT = re.compile(r"\b(intel|arc|xe|gpu max|gpu flex)\b", re.I)


@dataclass(frozen=True)
class MachineGpu:
    index: int
    name: str | None = None
    vendor: str | None = None  # "nvidia" | "amd" | "intel"
    compute_capability: str | None = None  # NVIDIA, "9.0"
    gfx: str | None = None  # AMD, "gfx942"
    tegra: bool = False  # a Jetson SoC GPU (JetPack), not a discrete or SBSA one

    @property
    def label(self) -> str:
        what = self.name or "unnamed GPU"
        if self.compute_capability:
            what += f" (sm_{self.compute_capability.replace('.', '')})"
        elif self.gfx:
            what += f" ({self.gfx})"
        return f"GPU {self.index} {what}"


@dataclass(frozen=True)
class InstalledTorch:
    version: str  # "2.13.0+cpu"
    local: str | None = None  # "cpu" | "cu128" | "rocm6.4" | None (plain PyPI wheel)
    cuda: str | None = None  # "12.8"
    hip: str | None = None
    arch_list: tuple[str, ...] = ()  # measured by the torch child, when it ran

    @property
    def base(self) -> str:
        return self.version.split("+", 1)[0]


@dataclass(frozen=True)
class Machine:
    os: str  # "linux" | "windows" | "macos"
    arch: str  # "x86_64" | "aarch64" | "arm64"
    python: str | None = None  # "3.11"
    driver: str | None = None  # NVIDIA driver "550.54.14"
    driver_cuda: str | None = None  # highest CUDA the driver supports, "12.4"
    gpus: tuple[MachineGpu, ...] = ()
    rocm_archs: tuple[str, ...] = ()
    wsl: bool = False
    torch: InstalledTorch | None = None
    glibc: str | None = None  # Linux: "2.35"; None when not known
    tegra: str | None = None  # Jetson: what identified it (/etc/nv_tegra_release), or None

    @property
    def is_tegra(self) -> bool:
        """A Jetson board: told by the probe, or by a Jetson GPU (never the SBSA wheels)."""
        return self.tegra is not None or any(g.tegra for g in self.nvidia_gpus())

    @property
    def platform(self) -> str:
        arch = self.arch
        if self.os == "macos":
            arch = "arm64" if arch in ("arm64", "aarch64") else arch
        elif arch == "arm64":
            arch = "aarch64"
        if arch in ("amd64", "x64"):
            arch = "x86_64"
        return f"{self.os}-{arch}"

    def nvidia_gpus(self) -> tuple[MachineGpu, ...]:
        return tuple(g for g in self.gpus if g.vendor == "nvidia")

    def amd_archs(self) -> tuple[str, ...]:
        archs = list(self.rocm_archs)
        for g in self.gpus:
            if g.vendor == "amd" and g.gfx and g.gfx not in archs:
                archs.append(g.gfx)
        return tuple(archs)

    def amd_gpus(self) -> tuple[MachineGpu, ...]:
        return tuple(g for g in self.gpus if g.vendor == "amd")

    def intel_gpus(self) -> tuple[MachineGpu, ...]:
        return tuple(g for g in self.gpus if g.vendor == "intel")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Machine:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_snapshot(cls, snapshot: Any, table: CompatTable | None = None) -> Machine:
        table = table or load_table()
        system = snapshot.system
        python = None
        if system.python is not None and system.python.version:
            python = short_python(system.python.version)
        gpus = tuple(
            describe_gpu(g.index, g.name, normal_cc(g.compute_capability), table, vendor="nvidia")
            for g in snapshot.gpus
        )
        installed = None
        t = snapshot.torch
        if t.installed and t.version:
            arch_list: tuple[str, ...] = ()
            rt = snapshot.torch_runtime
            if rt is not None and rt.status == "ok" and rt.version == t.version:
                arch_list = tuple(rt.arch_list)
            installed = InstalledTorch(t.version, t.local, t.cuda, t.hip, arch_list)
        return cls(
            os=system.os,
            arch=system.arch,
            python=python,
            driver=snapshot.driver.version,
            driver_cuda=snapshot.driver.cuda_version,
            gpus=gpus,
            rocm_archs=tuple(sorted(set(system.amd_gfx))),
            wsl=bool(system.wsl),
            torch=installed,
            glibc=getattr(system, "glibc", None),
            tegra=getattr(system, "tegra", None),
        )


def normal_cc(text: str | None) -> str | None:
    """A recorded compute capability as "X.Y" ("8.6", "8.6.0", "sm_86"); None when unreadable,
    so that the GPU counts as unknown (never as covered) rather than failing the run."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(?:sm_?)?(\d{1,2})(?:\.(\d)(?:\.0)?|(\d))\s*", str(text))
    if not m:
        return None
    return f"{int(m.group(1))}.{m.group(2) or m.group(3)}"


def short_python(version: str) -> str:
    """'3.11.7' -> '3.11'; a free-threaded build keeps its 't': '3.13t', '3.14.0t' -> '3.14t'."""
    text = version.strip()
    m = re.match(r"(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a Python version (X.Y): {version!r}")
    return f"{m.group(1)}.{m.group(2)}" + ("t" if text.endswith("t") else "")


def describe_gpu(
    index: int,
    name: str | None,
    cc: str | None,
    table: CompatTable,
    vendor: str | None = None,
    gfx: str | None = None,
) -> MachineGpu:
    """A GPU from what is known: the name implies capability or gfx when the table knows it."""
    entry = table.lookup_gpu(name) if name else None
    if entry is not None:
        vendor = vendor or entry.vendor
        if entry.vendor == vendor:
            if cc is None and entry.cc is not None:
                cc = f"{entry.cc[0]}.{entry.cc[1]}"
            if gfx is None and entry.gfx is not None:
                gfx = entry.gfx
    if vendor is None:
        if cc is not None:
            vendor = "nvidia"
        elif gfx is not None or (name and _AMD_HINT.search(name)):
            vendor = "amd"
        elif name and _INTEL_HINT.search(name):
            vendor = "intel"
        else:
            vendor = "nvidia"
    if cc is not None:
        parse_cc(cc)
    if entry is not None and entry.vendor == vendor:
        tegra = entry.tegra
    else:  # 5.3, 6.2, 7.2, 8.7 exist only as Jetson SoCs
        tegra = vendor == "nvidia" and cc is not None and parse_cc(cc) in table.tegra_ccs
    return MachineGpu(
        index=index, name=name, vendor=vendor, compute_capability=cc, gfx=gfx, tegra=tegra
    )
