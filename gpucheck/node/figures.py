"""Recorded node figures: what the node child measured and what NVML and sysfs said.

Pure data with a JSON round trip, so that the judging rules (`gpucheck.node.judge`) run on
recorded figures of machines we do not have (tests/fixtures/node/*.json). Values of the wrong
type read as None: a figure is either trustworthy or missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FIGURES_SCHEMA_VERSION = 1


class FiguresError(ValueError):
    """A figures file that is not a node figures document."""


def _num(d: dict, key: str) -> float | None:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(d: dict, key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(d: dict, key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


@dataclass(frozen=True)
class GpuFigures:
    index: int
    name: str | None = None
    pci_bus_id: str | None = None
    capability: str | None = None
    pcie_gen_max: int | None = None
    pcie_width_max: int | None = None
    nvlink_active: int | None = None  # links NVML reports active
    nvlink_down: tuple[int, ...] = ()  # links NVML reports present but inactive
    h2d_gbps: float | None = None  # pinned host -> device, GB/s (1e9 bytes/s)
    d2h_gbps: float | None = None
    matmul_tflops: float | None = None
    matmul_dtype: str | None = None  # "bf16" (Ampere and newer) or "fp16"
    error: str | None = None  # why this GPU's measurements are missing

    @classmethod
    def from_dict(cls, d: dict) -> GpuFigures:
        down = d.get("nvlink_down") if isinstance(d.get("nvlink_down"), list) else []
        return cls(
            index=_int(d, "index") or 0,
            name=_str(d, "name"),
            pci_bus_id=_str(d, "pci_bus_id"),
            capability=_str(d, "capability"),
            pcie_gen_max=_int(d, "pcie_gen_max"),
            pcie_width_max=_int(d, "pcie_width_max"),
            nvlink_active=_int(d, "nvlink_active"),
            nvlink_down=tuple(x for x in down if isinstance(x, int)),
            h2d_gbps=_num(d, "h2d_gbps"),
            d2h_gbps=_num(d, "d2h_gbps"),
            matmul_tflops=_num(d, "matmul_tflops"),
            matmul_dtype=_str(d, "matmul_dtype"),
            error=_str(d, "error"),
        )


@dataclass(frozen=True)
class AllReduce:
    bytes: int
    time_s: float
    algbw_gbps: float
    busbw_gbps: float

    @classmethod
    def from_dict(cls, d: dict) -> AllReduce | None:
        b, t, a, bus = (
            _int(d, "bytes"),
            _num(d, "time_s"),
            _num(d, "algbw_gbps"),
            _num(d, "busbw_gbps"),
        )
        if b is None or t is None or a is None or bus is None:
            return None
        return cls(b, t, a, bus)


@dataclass(frozen=True)
class Bridge:
    """A PCIe bridge above at least one GPU, with its ACS control bits (lspci's ACSCtl)."""

    bdf: str
    acs_ctl: tuple[str, ...] = ()  # the flags shown with "+", e.g. ("SrcValid", "ReqRedir")
    gpus: tuple[str, ...] = ()  # bus ids of the GPUs below it


@dataclass(frozen=True)
class NodeFigures:
    host: str | None = None
    gpus: tuple[GpuFigures, ...] = ()
    # p2p[i][j]: torch.cuda.can_device_access_peer(i, j); None when unknown
    p2p: tuple[tuple[bool | None, ...], ...] = ()
    p2p_copy_gbps: dict[str, float] = field(default_factory=dict)  # "i-j" -> GB/s
    p2p_copy_errors: dict[str, str] = field(default_factory=dict)  # "i-j" -> error
    # NVML common ancestor per pair, by name (NVLINK when NVLink joins them, else the PCIe level)
    topology: dict[str, str] = field(default_factory=dict)  # "i-j" -> "NVLINK" | "PIX" | ...
    allreduce: tuple[AllReduce, ...] = ()
    allreduce_error: str | None = None
    nccl_version: str | None = None
    torch_version: str | None = None
    cuda_available: bool | None = None
    env: dict[str, str] = field(default_factory=dict)  # NCCL_* and CUDA_DEVICE_ORDER
    interfaces: tuple[str, ...] = ()  # network interface names (/sys/class/net)
    shm_bytes: int | None = None
    in_container: bool = False
    bridges: tuple[Bridge, ...] = ()
    acs_readable: bool | None = None  # None: not looked; False: lspci showed no capabilities
    iommu_modes: dict[str, str] = field(default_factory=dict)  # GPU bus id -> "DMA" | "identity"
    child_status: str | None = None  # "ok" | "timeout" | "crash" | "not-run" | "no-torch"
    child_error: str | None = None
    nvml_error: str | None = None
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema_version"] = FIGURES_SCHEMA_VERSION
        d["p2p"] = [list(row) for row in self.p2p]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> NodeFigures:
        if not isinstance(d, dict) or d.get("schema_version") != FIGURES_SCHEMA_VERSION:
            raise FiguresError(
                f"not a node figures document (schema_version {FIGURES_SCHEMA_VERSION})"
            )
        gpus = tuple(GpuFigures.from_dict(g) for g in d.get("gpus") or () if isinstance(g, dict))
        rows = d.get("p2p") if isinstance(d.get("p2p"), list) else []
        p2p = tuple(
            tuple(x if isinstance(x, bool) else None for x in row)
            for row in rows
            if isinstance(row, list)
        )
        ar = tuple(
            a
            for a in (
                AllReduce.from_dict(x) for x in d.get("allreduce") or () if isinstance(x, dict)
            )
            if a
        )
        bridges = tuple(
            Bridge(
                bdf=str(b.get("bdf")),
                acs_ctl=tuple(str(x) for x in b.get("acs_ctl") or ()),
                gpus=tuple(str(x) for x in b.get("gpus") or ()),
            )
            for b in d.get("bridges") or ()
            if isinstance(b, dict)
        )

        def strmap(key: str) -> dict[str, str]:
            m = d.get(key)
            return {str(k): str(v) for k, v in m.items()} if isinstance(m, dict) else {}

        def nummap(key: str) -> dict[str, float]:
            m = d.get(key)
            if not isinstance(m, dict):
                return {}
            return {
                str(k): float(v)
                for k, v in m.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }

        cuda = d.get("cuda_available")
        acs = d.get("acs_readable")
        return cls(
            host=_str(d, "host"),
            gpus=gpus,
            p2p=p2p,
            p2p_copy_gbps=nummap("p2p_copy_gbps"),
            p2p_copy_errors=strmap("p2p_copy_errors"),
            topology=strmap("topology"),
            allreduce=ar,
            allreduce_error=_str(d, "allreduce_error"),
            nccl_version=_str(d, "nccl_version"),
            torch_version=_str(d, "torch_version"),
            cuda_available=cuda if isinstance(cuda, bool) else None,
            env=strmap("env"),
            interfaces=tuple(str(x) for x in d.get("interfaces") or ()),
            shm_bytes=_int(d, "shm_bytes"),
            in_container=d.get("in_container") is True,
            bridges=bridges,
            acs_readable=acs if isinstance(acs, bool) else None,
            iommu_modes=strmap("iommu_modes"),
            child_status=_str(d, "child_status"),
            child_error=_str(d, "child_error"),
            nvml_error=_str(d, "nvml_error"),
            duration_s=_num(d, "duration_s"),
        )
