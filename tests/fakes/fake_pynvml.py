"""A fake `pynvml` for probe tests: configurable GPUs, and every NVML error or a hang on demand.

Install it with `FakeNvml(...).install(monkeypatch)`; `import pynvml` then returns the fake.
Errors are given by name ("GpuIsLost") or code, per call (`fails={"nvmlDeviceGetPowerUsage":
"NotSupported"}`), per GPU (`FakeGpu(fails=...)`, `FakeGpu(handle_error=...)`), or at init.
The value "hang" blocks the call until `release()` (or 30 s), to test our timeout.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

# nvml.h codes, as in nvidia-ml-py.
CODES = {
    "Uninitialized": 1,
    "InvalidArgument": 2,
    "NotSupported": 3,
    "NoPermission": 4,
    "AlreadyInitialized": 5,
    "NotFound": 6,
    "InsufficientSize": 7,
    "InsufficientPower": 8,
    "DriverNotLoaded": 9,
    "Timeout": 10,
    "IrqIssue": 11,
    "LibraryNotFound": 12,
    "FunctionNotFound": 13,
    "CorruptedInforom": 14,
    "GpuIsLost": 15,
    "ResetRequired": 16,
    "OperatingSystem": 17,
    "LibRmVersionMismatch": 18,
    "InUse": 19,
    "Memory": 20,
    "NoData": 21,
    "Unknown": 999,
}


class NVMLError(Exception):
    """Like pynvml: NVMLError(code) builds the NVMLError_<Name> subclass for that code."""

    _by_code: dict[int, type] = {}

    def __new__(cls, value: int):
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return f"NVML error {self.value}"


ERROR_CLASSES: dict[str, type] = {}
for _name, _code in CODES.items():
    _cls = type(f"NVMLError_{_name}", (NVMLError,), {})
    NVMLError._by_code[_code] = _cls
    ERROR_CLASSES[_name] = _cls


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    bus_id: bytes = b"00000000:18:00.0"
    cc: tuple[int, int] = (9, 0)
    memory_total: int = 85520809984
    memory_used: int = 566755328
    pcie_gen: int = 5
    pcie_gen_max: int = 5
    pcie_width: int = 16
    pcie_width_max: int = 16
    temperature: int = 31
    power_mw: int = 71500
    power_limit_mw: int = 700000
    sm_clock: int = 345
    sm_clock_max: int = 1980
    mem_clock: int = 2619
    mem_clock_max: int = 2619
    reasons: int = 0x1  # gpu_idle
    utilization: int = 0
    ecc: tuple[int, int] = (1, 1)
    ecc_volatile: int = 0
    ecc_aggregate: int = 0
    retired_sbe: tuple[int, ...] = ()
    retired_dbe: tuple[int, ...] = ()
    retired_pending: int = 0
    remapped: tuple[int, int, int, int] = (0, 0, 0, 0)
    persistence: int = 1
    mig: tuple[int, int] = (0, 0)
    compute_mode: int = 0
    fails: dict[str, Any] = field(default_factory=dict)  # function name -> error name | "hang"
    handle_error: str | None = None


class FakeNvml:
    """Stands in for the pynvml module (an object with the same attribute names)."""

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        init_error: str | None = None,
        driver: Any = "550.54.14",
        cuda: int = 12040,
        nvml_version: str = "12.550.54.14",
        fails: dict[str, Any] | None = None,
        missing: tuple[str, ...] = (),
    ):
        self.gpus = [FakeGpu()] if gpus is None else gpus
        self.init_error = init_error
        self.driver = driver
        self.cuda = cuda
        self.nvml_version = nvml_version
        self.fails = fails or {}
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: list[str] = []
        self._release = threading.Event()
        self._missing = set(missing)
        self.NVMLError = NVMLError
        for name, cls in ERROR_CLASSES.items():
            setattr(self, f"NVMLError_{name}", cls)

    # --- plumbing ---
    def install(self, monkeypatch) -> FakeNvml:
        monkeypatch.setitem(sys.modules, "pynvml", self)
        return self

    def release(self) -> None:
        self._release.set()

    def __getattribute__(self, name: str) -> Any:
        # Functions listed in `missing` behave as if the bindings were too old to have them.
        if name.startswith("nvml") and name in object.__getattribute__(self, "_missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def _maybe_fail(self, fn: str, how: Any) -> None:
        self.calls.append(fn)
        if how is None:
            return
        if how == "hang":
            self._release.wait(30)
            return
        raise NVMLError(CODES[how] if isinstance(how, str) else how)

    def _gpu(self, handle: Any, fn: str) -> FakeGpu:
        gpu = self.gpus[handle]
        self._maybe_fail(fn, gpu.fails.get(fn) or self.fails.get(fn))
        return gpu

    # --- system ---
    def nvmlInit(self) -> None:
        self.init_calls += 1
        self._maybe_fail("nvmlInit", self.init_error or self.fails.get("nvmlInit"))

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlSystemGetDriverVersion(self) -> Any:
        self._maybe_fail("nvmlSystemGetDriverVersion", self.fails.get("nvmlSystemGetDriverVersion"))
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._maybe_fail(
            "nvmlSystemGetCudaDriverVersion", self.fails.get("nvmlSystemGetCudaDriverVersion")
        )
        return self.cuda

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._maybe_fail("nvmlSystemGetNVMLVersion", self.fails.get("nvmlSystemGetNVMLVersion"))
        return self.nvml_version

    def nvmlDeviceGetCount(self) -> int:
        self._maybe_fail("nvmlDeviceGetCount", self.fails.get("nvmlDeviceGetCount"))
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        gpu = self.gpus[index]
        self._maybe_fail("nvmlDeviceGetHandleByIndex", gpu.handle_error)
        return index

    # --- per device ---
    def nvmlDeviceGetName(self, h):
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, h):
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=self._gpu(h, "nvmlDeviceGetPciInfo").bus_id)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self._gpu(h, "nvmlDeviceGetCudaComputeCapability").cc

    def nvmlDeviceGetMemoryInfo(self, h):
        g = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(
            total=g.memory_total, used=g.memory_used, free=g.memory_total - g.memory_used
        )

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h):
        return self._gpu(h, "nvmlDeviceGetCurrPcieLinkGeneration").pcie_gen

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h):
        return self._gpu(h, "nvmlDeviceGetMaxPcieLinkGeneration").pcie_gen_max

    def nvmlDeviceGetCurrPcieLinkWidth(self, h):
        return self._gpu(h, "nvmlDeviceGetCurrPcieLinkWidth").pcie_width

    def nvmlDeviceGetMaxPcieLinkWidth(self, h):
        return self._gpu(h, "nvmlDeviceGetMaxPcieLinkWidth").pcie_width_max

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == 0, "only NVML_TEMPERATURE_GPU is queried"
        return self._gpu(h, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetPowerUsage(self, h):
        return self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetClockInfo(self, h, clock):
        g = self._gpu(h, "nvmlDeviceGetClockInfo")
        return {1: g.sm_clock, 2: g.mem_clock}[clock]

    def nvmlDeviceGetMaxClockInfo(self, h, clock):
        g = self._gpu(h, "nvmlDeviceGetMaxClockInfo")
        return {1: g.sm_clock_max, 2: g.mem_clock_max}[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return self._gpu(h, "nvmlDeviceGetCurrentClocksThrottleReasons").reasons

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(
            gpu=self._gpu(h, "nvmlDeviceGetUtilizationRates").utilization, memory=0
        )

    def nvmlDeviceGetEccMode(self, h):
        return list(self._gpu(h, "nvmlDeviceGetEccMode").ecc)

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        g = self._gpu(h, "nvmlDeviceGetTotalEccErrors")
        assert error_type == 1, "only uncorrected errors are queried"
        return {0: g.ecc_volatile, 1: g.ecc_aggregate}[counter_type]

    def nvmlDeviceGetRetiredPages(self, h, cause):
        g = self._gpu(h, "nvmlDeviceGetRetiredPages")
        return list({0: g.retired_sbe, 1: g.retired_dbe}[cause])

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h):
        return self._gpu(h, "nvmlDeviceGetRetiredPagesPendingStatus").retired_pending

    def nvmlDeviceGetRemappedRows(self, h):
        return self._gpu(h, "nvmlDeviceGetRemappedRows").remapped

    def nvmlDeviceGetPersistenceMode(self, h):
        return self._gpu(h, "nvmlDeviceGetPersistenceMode").persistence

    def nvmlDeviceGetMigMode(self, h):
        return list(self._gpu(h, "nvmlDeviceGetMigMode").mig)

    def nvmlDeviceGetComputeMode(self, h):
        return self._gpu(h, "nvmlDeviceGetComputeMode").compute_mode


# Every per-device function the probe calls, for "everything fails" tests.
DEVICE_FUNCTIONS = tuple(
    name
    for name in vars(FakeNvml)
    if name.startswith("nvmlDevice")
    and name
    not in (
        "nvmlDeviceGetCount",
        "nvmlDeviceGetHandleByIndex",
    )
)
