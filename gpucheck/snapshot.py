"""The snapshot: everything the probes saw, as frozen data with a JSON round trip.

Only `gpucheck.probe` builds snapshots from the live machine; everything downstream
(diagnose, recommend, render) reads them and nothing else. A value the machine could not
give is `None`, and the section says why (`error`) and where it looked (`source`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from gpucheck.plain import to_plain  # the one serialisation path (re-exported here)

SCHEMA_VERSION = 1


class SnapshotError(ValueError):
    """A snapshot file that cannot be read: malformed, truncated or from a newer schema."""


@dataclass(frozen=True)
class PythonInfo:
    version: str  # "3.11.7"
    executable: str
    implementation: str = "CPython"
    venv: str | None = None  # sys.prefix when it differs from sys.base_prefix
    conda_env: str | None = None  # $CONDA_PREFIX


@dataclass(frozen=True)
class DeviceNode:
    path: str  # "/dev/nvidia0"
    readable: bool
    writable: bool = False


@dataclass(frozen=True)
class LibDir:
    """A folder (e.g. an LD_LIBRARY_PATH entry) and the CUDA/cuDNN libraries in it."""

    path: str
    libraries: tuple[str, ...] = ()


@dataclass(frozen=True)
class System:
    os: str  # "linux" | "windows" | "macos"
    arch: str  # "x86_64" | "aarch64" | "arm64"
    distro: str | None = None  # "Debian GNU/Linux 12 (bookworm)"
    kernel: str | None = None
    glibc: str | None = None
    python: PythonInfo | None = None
    container: str | None = None  # "docker" | "podman" | "kubernetes" | None
    wsl: bool = False
    nouveau_loaded: bool | None = None
    nvidia_module_loaded: bool | None = None
    device_nodes: tuple[DeviceNode, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # CUDA_VISIBLE_DEVICES and friends, as set
    ld_library_path: tuple[LibDir, ...] = ()  # entries holding CUDA/cuDNN libraries
    shm_bytes: int | None = None
    cpu_count: int | None = None
    memory_bytes: int | None = None
    linux_driver_in_wsl: tuple[str, ...] = ()  # Linux driver files found inside WSL2
    # PCI addresses of NVIDIA (vendor 0x10de) display/3D controllers from /sys/bus/pci/devices;
    # None: not probed. Tells "no GPU at all" from "a GPU with no working driver".
    nvidia_pci_devices: tuple[str, ...] | None = None
    amd_gfx: tuple[str, ...] = ()  # AMD GPU architectures seen by the amdgpu/KFD driver, "gfx942"
    # An NVIDIA Jetson/Tegra SoC (integrated GPU, no NVML): what identified it, e.g.
    # "R36 (release), REVISION: 3.0 (/etc/nv_tegra_release)"; None: not a Tegra board.
    tegra: str | None = None


@dataclass(frozen=True)
class Driver:
    version: str | None = None  # "550.54.14"
    cuda_version: str | None = None  # highest CUDA the driver supports, "12.4"
    source: str | None = None  # "nvml" | "/sys/module/nvidia/version" | ... | "nvidia-smi"
    kernel_module_version: str | None = None  # from /proc/driver/nvidia/version
    nvml_library_version: str | None = None  # version of libnvidia-ml when NVML init worked
    nvml_error: str | None = None  # "LibraryNotFound", "DriverNotLoaded", ...
    nvidia_smi_error: str | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    compute_capability: str | None = None  # "9.0"
    vbios_version: str | None = None  # "96.00.74.00.1C": fleets compare it across nodes (drift)
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    pcie_gen_current: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_current: int | None = None
    pcie_width_max: int | None = None
    temperature_c: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    sm_clock_max_mhz: int | None = None
    mem_clock_mhz: int | None = None
    mem_clock_max_mhz: int | None = None
    clock_event_reasons: tuple[str, ...] | None = None  # "gpu_idle", "sw_power_cap", ...
    utilization_percent: int | None = None
    ecc_enabled: bool | None = None
    ecc_uncorrected_volatile: int | None = None
    ecc_uncorrected_aggregate: int | None = None
    retired_pages_sbe: int | None = None
    retired_pages_dbe: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    persistence_mode: bool | None = None
    mig_enabled: bool | None = None
    mig_devices: tuple[str, ...] | None = None  # MIG device UUIDs ("MIG-..."); None: not probed
    compute_mode: str | None = None  # "default" | "exclusive_process" | "prohibited"
    unsupported: tuple[str, ...] = ()  # fields this GPU or driver does not support
    field_errors: dict[str, str] = field(default_factory=dict)  # field -> NVML error name
    error: str | None = None  # the whole GPU failed, e.g. "GpuIsLost"
    source: str = "nvml"


@dataclass(frozen=True)
class Library:
    """One CUDA-family shared library or toolkit found on disk."""

    name: str  # "cudnn", "cudart", "cuda" (the driver's libcuda), "nvml", "cublas", ...
    version: str | None
    path: str
    source: str  # "ldconfig" | "pip:nvidia-cudnn-cu12" | "conda" | "toolkit" | "LD_LIBRARY_PATH"


@dataclass(frozen=True)
class Toolkit:
    version: str | None  # "13.0"
    path: str  # the toolkit folder, e.g. "/usr/local/cuda-13.0"
    source: str  # "nvcc" | "CUDA_HOME" | "CUDA_PATH" | "folder" | "conda"
    nvcc: str | None = None


@dataclass(frozen=True)
class Cuda:
    toolkits: tuple[Toolkit, ...] = ()
    libraries: tuple[Library, ...] = ()
    errors: tuple[str, ...] = ()

    def libs(self, name: str) -> tuple[Library, ...]:
        return tuple(lib for lib in self.libraries if lib.name == name)


@dataclass(frozen=True)
class Package:
    name: str
    version: str


@dataclass(frozen=True)
class Torch:
    """Torch as its installed files describe it, read without importing it."""

    installed: bool = False
    version: str | None = None  # "2.9.1+cu128"
    local: str | None = None  # "cu128" | "cpu" | "rocm6.4" | None (plain PyPI wheel)
    cuda: str | None = None  # CUDA it was built for, "12.8"
    hip: str | None = None
    location: str | None = None
    nvidia_wheels: tuple[Package, ...] = ()
    source: str | None = None  # "importlib.metadata"
    error: str | None = None
    torchvision: str | None = None  # "0.29.1+cpu": installed beside torch (metadata, no import)


@dataclass(frozen=True)
class TorchDevice:
    index: int
    name: str | None = None
    capability: str | None = None  # "9.0"
    total_memory_bytes: int | None = None
    matmul_ok: bool | None = None
    matmul_max_error: float | None = None
    error: str | None = None
    uuid: str | None = None  # "GPU-..." as NVML spells it: joins a CUDA index to an NVML one
    pci_bus_id: str | None = None  # "00000000:18:00.0"
    matmul_tolerance: float | None = None  # the bound the error was judged against
    matmul_precision: str | None = None  # "fp32" | "tf32" | "bf16": what the GEMM ran in
    bf16_supported: bool | None = None  # native bf16 (not emulated), this device


@dataclass(frozen=True)
class TorchRuntime:
    """What a child process that imported torch saw. `status` says how that went."""

    status: str  # "ok" | "import-error" | "timeout" | "crash" | "not-installed" | "skipped"
    duration_s: float | None = None
    import_time_s: float | None = None
    error: str | None = None
    returncode: int | None = None
    version: str | None = None
    cuda_version: str | None = None
    hip_version: str | None = None
    cuda_available: bool | None = None
    device_count: int | None = None
    devices: tuple[TorchDevice, ...] = ()
    arch_list: tuple[str, ...] = ()  # "sm_90", "compute_90", ...
    cudnn_version: str | None = None  # "9.1.0"
    cudnn_path: str | None = None  # libcudnn actually mapped into the child
    nccl_version: str | None = None
    bf16_supported: bool | None = None
    loaded_libraries: tuple[str, ...] = ()  # CUDA-family .so paths mapped into the child
    timeout_s: float | None = None


@dataclass(frozen=True)
class Identity:
    """Which machine recorded the snapshot, so a fleet of reports can be told apart."""

    hostname: str | None = None  # socket.gethostname()
    slurm_node_name: str | None = None  # $SLURMD_NODENAME: the name Slurm knows the node by
    machine_id: str | None = None  # /etc/machine-id (systemd), where readable


@dataclass(frozen=True)
class Snapshot:
    system: System
    driver: Driver = field(default_factory=Driver)
    gpus: tuple[Gpu, ...] = ()
    cuda: Cuda = field(default_factory=Cuda)
    torch: Torch = field(default_factory=Torch)
    torch_runtime: TorchRuntime | None = None  # None: the dynamic probe was not run
    identity: Identity | None = None  # None: recorded before gpucheck probed it
    created: str | None = None  # ISO-8601 UTC
    gpucheck_version: str | None = None
    probe_seconds: float | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        if not isinstance(data, dict):
            raise SnapshotError("a snapshot must be a JSON object")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise SnapshotError("no integer schema_version: this is not a gpucheck snapshot")
        if version > SCHEMA_VERSION:
            raise SnapshotError(
                f"snapshot schema_version {version} is newer than this gpucheck understands "
                f"({SCHEMA_VERSION}); upgrade gpucheck"
            )
        return from_plain(cls, data, "snapshot")

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"not valid JSON: {exc}") from None
        except (ValueError, RecursionError):  # a 5,000-digit number, nesting without end
            raise SnapshotError("not a snapshot: a number too long or nesting too deep") from None
        return cls.from_dict(data)


# --- generic conversion between frozen dataclasses and plain JSON data ---------------------


_HINTS: dict[type, dict[str, Any]] = {}

# Text fields with a fixed shape, checked on load so that no rule meets "nine" where it expects
# "9.0". Keyed by field name: a name means the same thing in every section. The generated
# schema states them as patterns.
SHAPES: dict[str, tuple[str, str]] = {
    "compute_capability": (r"^[0-9]{1,3}\.[0-9]{1,3}$", "a compute capability X.Y"),
    "capability": (r"^[0-9]{1,3}\.[0-9]{1,3}$", "a compute capability X.Y"),
}
INT_LIMIT = 2**63  # integers are 64-bit in every producer we read (NVML, /proc, torch)


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def from_plain(tp: Any, data: Any, where: str) -> Any:
    """Rebuild a value of type `tp` from plain JSON data; raise SnapshotError on a mismatch.

    Unknown keys are ignored so that a snapshot from a newer minor release still loads.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return from_plain(inner, data, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise SnapshotError(f"{where}: expected an object, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                value = from_plain(hints[f.name], data[f.name], f"{where}.{f.name}")
                if isinstance(value, str) and f.name in SHAPES:
                    pattern, what = SHAPES[f.name]
                    if not re.match(pattern, value):
                        raise SnapshotError(f"{where}.{f.name}: expected {what}, got {value!r:.40}")
                kwargs[f.name] = value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SnapshotError(f"{where}: missing field {f.name!r}")
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(data, list):
            raise SnapshotError(f"{where}: expected a list, got {type(data).__name__}")
        (inner, _ellipsis) = typing.get_args(tp)
        return tuple(from_plain(inner, v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise SnapshotError(f"{where}: expected an object, got {type(data).__name__}")
        _k, inner = typing.get_args(tp)
        return {str(k): from_plain(inner, v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise SnapshotError(f"{where}: expected a number, got {data!r:.40}")
        return float(data)
    if tp in (int, str, bool):
        if type(data) is not tp:
            raise SnapshotError(f"{where}: expected {tp.__name__}, got {data!r:.40}")
        if tp is int and not -INT_LIMIT <= data < INT_LIMIT:
            raise SnapshotError(f"{where}: integer out of range ({len(str(abs(data)))} digits)")
        return data
    raise SnapshotError(f"{where}: unsupported type {tp!r}")  # pragma: no cover - a bug
