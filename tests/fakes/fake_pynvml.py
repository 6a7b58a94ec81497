"""A fake `pynvml` for probe tests: configurable GPUs, and every NVML error or a hang on demand.

Install it with `FakeNvml(...).install(monkeypatch)`; `import pynvml` then returns the fake.
Errors are given by name ("GpuIsLost") or code, per call (`fails={"nvmlDeviceGetPowerUsage":
"NotSupported"}`), per GPU (`FakeGpu(fails=...)`, `FakeGpu(handle_error=...)`), or at init.
The value "hang" blocks the call until `release()` (or 30 s), to test our timeout; a float
makes the call take that many seconds, then answer.
`driver_lacks={"nvmlDeviceGetCurrentClocksEventReasons"}` models new bindings on an old
driver: the Python function exists but its C symbol does not (FunctionNotFound), as the real
bindings behave (they look each symbol up when called). The default GPU is the H100 of
tests/factories.py.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from factories import MIB, MODELS, uuid

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
    "VgpuEccNotSupported": 22,
    "InsufficientResources": 23,
    "FreqNotSupported": 24,
    "ArgumentVersionMismatch": 25,
    "Deprecated": 26,
    "NotReady": 27,
    "GpuNotFound": 28,
    "InvalidState": 29,
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


_H100 = MODELS["h100"]


@dataclass
class FakeGpu:
    name: str = _H100.name
    uuid: str = uuid("fake-h100-0")
    bus_id: bytes = b"00000000:18:00.0"
    cc: tuple[int, int] = (9, 0)
    vbios: str = "96.00.99.00.01"
    memory_total: int = _H100.memory
    memory_used: int = 4 * MIB  # what v2 reports (and nvidia-smi >= R510 shows) at idle
    memory_reserved: int = 562561024  # v1 counts it as used: 540.5 MiB on an idle H100
    pcie_gen: int = _H100.pcie_gen
    pcie_gen_max: int = _H100.pcie_gen
    pcie_width: int = _H100.pcie_width
    pcie_width_max: int = _H100.pcie_width
    temperature: int = 31
    power_mw: int = 71500
    power_limit_mw: int = int(_H100.power_limit_w * 1000)
    sm_clock: int = 345
    sm_clock_max: int = _H100.sm_clock_max
    mem_clock: int = _H100.mem_clock_max  # HBM stays at its one clock at idle
    mem_clock_max: int = _H100.mem_clock_max
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
    mig_devices: tuple[str, ...] = ()  # MIG device UUIDs, filling the first slots
    mig_slots: int = 7  # nvmlDeviceGetMaxMigDeviceCount
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
        driver_lacks: tuple[str, ...] = (),
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
        self.driver_lacks = set(driver_lacks)
        self.nvmlMemory_v2 = 0x02000028  # pynvml's struct version constant
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
        if isinstance(how, float):  # a slow call: seconds to take, then answer
            time.sleep(how)
            return
        raise NVMLError(CODES[how] if isinstance(how, str) else how)

    def _gpu(self, handle: Any, fn: str, symbol: str | None = None) -> FakeGpu:
        if (symbol or fn) in self.driver_lacks:  # the bindings have it, the driver does not
            self.calls.append(symbol or fn)
            raise NVMLError(CODES["FunctionNotFound"])
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
        if isinstance(h, tuple):  # a MIG device handle
            return self.gpus[h[0]].mig_devices[h[1]]
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetVbiosVersion(self, h):
        return self._gpu(h, "nvmlDeviceGetVbiosVersion").vbios

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=self._gpu(h, "nvmlDeviceGetPciInfo").bus_id)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self._gpu(h, "nvmlDeviceGetCudaComputeCapability").cc

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        if version is None:  # v1: reserved memory counts as used
            g = self._gpu(h, "nvmlDeviceGetMemoryInfo")
            used = g.memory_used + g.memory_reserved
            return SimpleNamespace(total=g.memory_total, used=used, free=g.memory_total - used)
        assert version == self.nvmlMemory_v2
        g = self._gpu(h, "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMemoryInfo_v2")
        free = g.memory_total - g.memory_used - g.memory_reserved
        return SimpleNamespace(
            version=version,
            total=g.memory_total,
            reserved=g.memory_reserved,
            used=g.memory_used,
            free=free,
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

    def nvmlDeviceGetTemperatureV(self, h, sensor, version=0x100000C):
        assert sensor == 0, "only NVML_TEMPERATURE_GPU is queried"
        return self._gpu(h, "nvmlDeviceGetTemperatureV").temperature

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
        g = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        if g.mig[0] == 1:  # utilisation is not reported for a GPU in MIG mode
            raise NVMLError(CODES["NotSupported"])
        return SimpleNamespace(gpu=g.utilization, memory=0)

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

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        g = self._gpu(h, "nvmlDeviceGetMaxMigDeviceCount")
        return g.mig_slots if g.mig[0] == 1 else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, index):
        g = self._gpu(h, "nvmlDeviceGetMigDeviceHandleByIndex")
        if index >= len(g.mig_devices):
            raise NVMLError(CODES["NotFound"])  # an empty slot
        return (h, index)

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
