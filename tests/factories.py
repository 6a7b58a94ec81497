"""Test factories: the GPU models, systems, drivers and torch builds every test builds from.

One place for the machines that tests, the fake pynvml and the recorded fixtures
(tests/fixtures/make_snapshots.py) describe, so that an H100 is typed out once. Values come
from public sources: GPU names, memory sizes, clocks and PCI bus ids from public `nvidia-smi -q`
outputs; driver -> CUDA from NVIDIA's CUDA Toolkit release notes (Table 3); arch lists from
`torch.cuda.get_arch_list()` of the PyTorch wheels; cuDNN wheel versions from the wheels'
metadata on PyPI.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from gpucheck.snapshot import (
    Cuda,
    DeviceNode,
    Driver,
    Gpu,
    Library,
    Package,
    PythonInfo,
    Snapshot,
    System,
    Torch,
    TorchDevice,
    TorchRuntime,
)

MIB = 2**20
GIB = 2**30
CREATED = "2026-11-28T12:00:00Z"
VERSION = "0.1.0"


def uuid(seed: str, prefix: str = "GPU") -> str:
    h = hashlib.sha1(seed.encode()).hexdigest()
    return f"{prefix}-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# --- GPU models ---------------------------------------------------------------------------


class Model(NamedTuple):
    name: str
    cc: str
    memory: int  # bytes, as NVML reports total memory
    pcie_gen: int  # the link's maximum
    pcie_width: int
    power_limit_w: float
    sm_clock_max: int  # MHz
    mem_clock_max: int  # MHz
    datacenter: bool  # ECC, persistence on by default
    hbm: bool  # HBM memory runs at its one clock even at idle (H100 2619, A100 1593, V100 877)


MODELS = {
    "h100": Model("NVIDIA H100 80GB HBM3", "9.0", 81559 * MIB, 5, 16, 700.0, 1980, 2619, True, True),
    "a100": Model("NVIDIA A100-SXM4-80GB", "8.0", 81920 * MIB, 4, 16, 400.0, 1410, 1593, True, True),
    "v100": Model("Tesla V100-SXM2-32GB", "7.0", 32768 * MIB, 3, 16, 300.0, 1530, 877, True, True),
    "l40s": Model("NVIDIA L40S", "8.9", 46068 * MIB, 4, 16, 350.0, 2520, 9001, True, False),
    "l4": Model("NVIDIA L4", "8.9", 23034 * MIB, 4, 16, 72.0, 2040, 6251, True, False),
    "a10g": Model("NVIDIA A10G", "8.6", 23028 * MIB, 4, 16, 300.0, 1710, 6251, True, False),
    "t4": Model("Tesla T4", "7.5", 15360 * MIB, 3, 16, 70.0, 1590, 5001, True, False),
    "a6000": Model("NVIDIA RTX A6000", "8.6", 49140 * MIB, 4, 16, 300.0, 2100, 8001, True, False),
    "rtx4090": Model(
        "NVIDIA GeForce RTX 4090", "8.9", 24564 * MIB, 4, 16, 450.0, 3120, 10501, False, False
    ),
    "rtx3090": Model(
        "NVIDIA GeForce RTX 3090", "8.6", 24576 * MIB, 4, 16, 350.0, 2100, 9751, False, False
    ),
    "rtx3060": Model(
        "NVIDIA GeForce RTX 3060", "8.6", 12288 * MIB, 4, 16, 170.0, 2100, 7501, False, False
    ),
    "gtx1080ti": Model(
        "NVIDIA GeForce GTX 1080 Ti", "6.1", 11264 * MIB, 3, 16, 250.0, 1911, 5505, False, False
    ),
    "rtx3050m": Model(
        "NVIDIA GeForce RTX 3050 Laptop GPU", "8.6", 4096 * MIB, 4, 8, 60.0, 2100, 6001, False, False
    ),
}  # fmt: skip
IDLE_GDDR_MEM_CLOCK = 405  # MHz: GDDR5/6/6X boards drop their memory clock to 405 at idle

DGX_H100_BUS = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")
DGX_A100_BUS = ("07", "0F", "47", "4E", "87", "90", "B7", "BD")


def gpu(model: str, index: int = 0, bus: str = "01", *, busy: bool = False, **kw) -> Gpu:
    m = MODELS[model]
    name, cc, mem, gen, width, plimit, smax, mmax, dc = m[:9]
    base = {
        "index": index,
        "name": name,
        "uuid": uuid(f"{model}-{index}-{bus}"),
        "pci_bus_id": f"00000000:{bus}:00.0",
        "compute_capability": cc,
        "memory_total_bytes": mem,
        "memory_used_bytes": (mem * 7 // 10) if busy else 4 * MIB if dc else 310 * MIB,
        "pcie_gen_current": gen,
        "pcie_gen_max": gen,
        "pcie_width_current": width,
        "pcie_width_max": width,
        "temperature_c": 71 if busy else 33,
        "power_draw_w": round(plimit * (0.93 if busy else 0.1), 1),
        "power_limit_w": plimit,
        "sm_clock_mhz": smax - 105 if busy else 345 if dc else 210,
        "sm_clock_max_mhz": smax,
        "mem_clock_mhz": mmax if busy or m.hbm else IDLE_GDDR_MEM_CLOCK,
        "mem_clock_max_mhz": mmax,
        "clock_event_reasons": () if busy else ("gpu_idle",),
        "utilization_percent": 97 if busy else 0,
        "ecc_enabled": True if dc else None,
        "ecc_uncorrected_volatile": 0 if dc else None,
        "ecc_uncorrected_aggregate": 0 if dc else None,
        "retired_pages_sbe": 0 if model in ("v100", "t4") else None,
        "retired_pages_dbe": 0 if model in ("v100", "t4") else None,
        "retired_pages_pending": False if model in ("v100", "t4") else None,
        "remapped_rows_pending": False if dc and model not in ("v100", "t4") else None,
        "remapped_rows_failure": False if dc and model not in ("v100", "t4") else None,
        "persistence_mode": True if dc else False,
        "mig_enabled": False if model in ("h100", "a100") else None,
        "compute_mode": "default",
        "unsupported": () if dc else ("ecc", "retired_pages", "remapped_rows", "mig"),
    }
    base.update(kw)
    return Gpu(**base)


def gpus(model: str, n: int, buses=None, **kw) -> tuple[Gpu, ...]:
    buses = buses or [f"{i + 1:02X}" for i in range(n)]
    return tuple(gpu(model, i, buses[i], **kw) for i in range(n))


def nodes(n: int, *, uvm: bool = True, readable: bool = True) -> tuple[DeviceNode, ...]:
    out = [DeviceNode(f"/dev/nvidia{i}", readable, readable) for i in range(n)]
    out.append(DeviceNode("/dev/nvidiactl", True, True))
    if uvm:
        out += [
            DeviceNode("/dev/nvidia-uvm", True, True),
            DeviceNode("/dev/nvidia-uvm-tools", True, True),
        ]
    return tuple(out)


# --- systems --------------------------------------------------------------------------------

UBUNTU = {
    "22.04": ("Ubuntu 22.04.4 LTS", "5.15.0-119-generic", "2.35", "3.10.12"),
    "24.04": ("Ubuntu 24.04.1 LTS", "6.8.0-45-generic", "2.39", "3.12.3"),
    "20.04": ("Ubuntu 20.04.6 LTS", "5.4.0-196-generic", "2.31", "3.10.14"),
}


def py(version: str, venv: str = "/home/user/venv") -> PythonInfo:
    return PythonInfo(version=version, executable=f"{venv}/bin/python", venv=venv)


def system(release: str = "22.04", *, n_nodes: int = 0, **kw) -> System:
    distro, kernel, glibc, pyv = UBUNTU[release]
    base = {
        "os": "linux",
        "arch": "x86_64",
        "distro": distro,
        "kernel": kernel,
        "glibc": glibc,
        "python": py(pyv),
        "nouveau_loaded": False,
        "nvidia_module_loaded": n_nodes > 0,
        "device_nodes": nodes(n_nodes) if n_nodes else (),
        "shm_bytes": 64 * GIB,
        "cpu_count": 32,
        "memory_bytes": 128 * GIB,
        "nvidia_pci_devices": (),
    }
    base.update(kw)
    return System(**base)


def site(pyv: str) -> str:
    return f"/home/user/venv/lib/python{'.'.join(pyv.split('.')[:2])}/site-packages"


# driver version -> highest CUDA it supports (nvidia-smi "CUDA Version")
DRIVER_CUDA = {
    "570.133.20": "12.8",
    "550.54.14": "12.4",
    "550.54.15": "12.4",
    "550.90.07": "12.4",
    "550.120": "12.4",
    "550.127.05": "12.4",
    "535.183.01": "12.2",
    "470.256.02": "11.4",
}


def driver(version: str, **kw) -> Driver:
    cuda_major = DRIVER_CUDA[version].split(".")[0]
    base = {
        "version": version,
        "cuda_version": DRIVER_CUDA[version],
        "source": "nvml",
        "kernel_module_version": version,
        "nvml_library_version": f"{cuda_major}.{version}",
    }
    base.update(kw)
    return Driver(**base)


def driver_libs(version: str) -> tuple[Library, ...]:
    d = "/usr/lib/x86_64-linux-gnu"
    return (
        Library("cuda", version, f"{d}/libcuda.so.{version}", "ldconfig"),
        Library("nvml", version, f"{d}/libnvidia-ml.so.{version}", "ldconfig"),
    )


# --- torch builds ---------------------------------------------------------------------------

# torch version -> (CUDA, {wheel: version}); cuDNN per release from install_matrix.md 3.1.
WHEELS = {
    "2.9.1+cu128": ("12.8", {
        "nvidia-cuda-runtime-cu12": "12.8.90", "nvidia-cublas-cu12": "12.8.4.1",
        "nvidia-cudnn-cu12": "9.10.2.21", "nvidia-nccl-cu12": "2.27.5",
        "nvidia-nvjitlink-cu12": "12.8.93", "nvidia-cusparse-cu12": "12.5.8.93",
    }),
    "2.11.0+cu128": ("12.8", {
        "nvidia-cuda-runtime-cu12": "12.8.90", "nvidia-cublas-cu12": "12.8.4.1",
        "nvidia-cudnn-cu12": "9.17.1.4", "nvidia-nccl-cu12": "2.28.9",
        "nvidia-nvjitlink-cu12": "12.8.93",
    }),
    "2.7.1+cu126": ("12.6", {
        "nvidia-cuda-runtime-cu12": "12.6.77", "nvidia-cublas-cu12": "12.6.4.1",
        "nvidia-cudnn-cu12": "9.5.1.17", "nvidia-nccl-cu12": "2.26.2",
        "nvidia-nvjitlink-cu12": "12.6.85",
    }),
    "2.6.0+cu124": ("12.4", {
        "nvidia-cuda-runtime-cu12": "12.4.127", "nvidia-cublas-cu12": "12.4.5.8",
        "nvidia-cudnn-cu12": "9.1.0.70", "nvidia-nccl-cu12": "2.21.5",
        "nvidia-nvjitlink-cu12": "12.4.127",
    }),
    "2.4.1+cu121": ("12.1", {
        "nvidia-cuda-runtime-cu12": "12.1.105", "nvidia-cublas-cu12": "12.1.3.1",
        "nvidia-cudnn-cu12": "9.1.0.70", "nvidia-nccl-cu12": "2.20.5",
        "nvidia-nvjitlink-cu12": "12.6.85",
    }),
}  # fmt: skip

# arch lists as torch.cuda.get_arch_list() prints them (install_matrix.md 3.3)
ARCH = {
    "2.9.1+cu128": ("sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
    "2.11.0+cu128": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
    "2.7.1+cu126": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    "2.6.0+cu124": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    "2.4.1+cu121": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
}


def torch_pip(version: str, pyv: str = "3.10.12", *, drop: tuple[str, ...] = ()) -> Torch:
    cuda, wheels = WHEELS[version]
    return Torch(
        installed=True,
        version=version,
        local=version.split("+")[1],
        cuda=cuda,
        location=f"{site(pyv)}/torch",
        nvidia_wheels=tuple(Package(n, v) for n, v in wheels.items() if n not in drop),
        source="importlib.metadata",
    )


def cudnn_wheel_lib(version: str, pyv: str = "3.10.12") -> Library:
    v = WHEELS[version][1]["nvidia-cudnn-cu12"]
    return Library(
        "cudnn",
        ".".join(v.split(".")[:3]),
        f"{site(pyv)}/nvidia/cudnn/lib/libcudnn.so.9",
        "pip:nvidia-cudnn-cu12",
    )


# The bound the torch child computes for its 256^2 exact-input check: the fp32 accumulation
# bound, the same whether TF32 is in force or not.
MATMUL_TOLERANCE_FP32 = 1.69e-3


def rt_ok(version: str, gs: tuple[Gpu, ...], pyv: str = "3.10.12", **kw) -> TorchRuntime:
    cuda, wheels = WHEELS[version]
    cudnn = ".".join(wheels["nvidia-cudnn-cu12"].split(".")[:3])
    devices = tuple(
        TorchDevice(
            index=i,
            name=g.name,
            capability=g.compute_capability,
            total_memory_bytes=(g.memory_total_bytes or 0) - 530 * MIB,
            matmul_ok=True,
            matmul_max_error=0.0,  # the child's inputs make the product exact on a working GPU
            uuid=g.uuid,
            pci_bus_id=g.pci_bus_id,
            matmul_tolerance=MATMUL_TOLERANCE_FP32,
            matmul_precision="fp32",
            bf16_supported=float(g.compute_capability or 0) >= 8.0,
        )
        for i, g in enumerate(gs)
    )
    base = {
        "status": "ok",
        "duration_s": 6.8,
        "import_time_s": 2.4,
        "version": version,
        "cuda_version": cuda,
        "cuda_available": bool(gs),
        "device_count": len(gs),
        "devices": devices,
        "arch_list": ARCH[version],
        "cudnn_version": cudnn,
        "cudnn_path": f"{site(pyv)}/nvidia/cudnn/lib/libcudnn.so.9",
        "nccl_version": wheels["nvidia-nccl-cu12"],
        "bf16_supported": bool(gs) and all(float(g.compute_capability or 0) >= 8.0 for g in gs),
        "loaded_libraries": (
            f"{site(pyv)}/nvidia/cuda_runtime/lib/libcudart.so.12",
            f"{site(pyv)}/nvidia/cublas/lib/libcublas.so.12",
            f"{site(pyv)}/nvidia/cudnn/lib/libcudnn.so.9",
        ),
        "timeout_s": 60.0,
    }
    base.update(kw)
    return TorchRuntime(**base)


def rt_no_cuda(version: str, error: str, **kw) -> TorchRuntime:
    base = {
        "status": "ok",
        "duration_s": 3.1,
        "import_time_s": 2.5,
        "version": version,
        "cuda_version": WHEELS[version][0] if version in WHEELS else None,
        "cuda_available": False,
        "device_count": 0,
        "arch_list": (),
        "error": error,
        "timeout_s": 60.0,
    }
    base.update(kw)
    return TorchRuntime(**base)


def snap(system_: System, **kw) -> Snapshot:
    return Snapshot(
        system=system_, created=CREATED, gpucheck_version=VERSION, probe_seconds=0.21, **kw
    )


def pip_box(
    model: str,
    n: int,
    drv: str,
    torch_version: str,
    *,
    release: str = "22.04",
    buses=None,
    gpu_kw=None,
    **kw,
) -> Snapshot:
    """A bare-metal Linux box with n GPUs, a working driver and a pip CUDA torch."""
    pyv = UBUNTU[release][3]
    gs = gpus(model, n, buses, **(gpu_kw or {}))
    defaults = {
        "driver": driver(drv),
        "gpus": gs,
        "cuda": Cuda(libraries=driver_libs(drv) + (cudnn_wheel_lib(torch_version, pyv),)),
        "torch": torch_pip(torch_version, pyv),
        "torch_runtime": rt_ok(torch_version, gs, pyv),
    }
    defaults.update(kw)
    return snap(system(release, n_nodes=n), **defaults)
