"""NVML through `pynvml` (the `nvidia-ml-py` distribution), in a daemon thread with a timeout.

A field a GPU or driver does not support lands in `Gpu.unsupported`; any other NVML error is
kept by name in `Gpu.field_errors`. NVML can hang (a GPU falling off the bus, a wedged
driver), so the whole query runs in a daemon thread that we stop waiting for.

Names and behaviour follow nvml.h and the nvidia-ml-py bindings (13.615.71):
- `nvmlDeviceGetCount` (C `nvmlDeviceGetCount_v2`) also counts GPUs whose handle is refused
  with NVML_ERROR_NO_PERMISSION (a Slurm job with cgroup-restricted GPUs): such a GPU is
  recorded with `error="NoPermission"` and is not a faulty GPU.
- The bindings look each C symbol up only when called, so a function the Python package has
  can still raise FunctionNotFound on an older driver (nvmlDeviceGetCurrentClocksEventReasons
  appeared in R535; nvmlDeviceGetTemperatureV and nvmlDeviceGetMemoryInfo_v2 are newer than
  the calls they replace): each field lists the calls to try, newest first.
- Memory used is read with `nvmlDeviceGetMemoryInfo(handle, version=nvmlMemory_v2)` where it
  exists: v2 reports reserved memory apart, as nvidia-smi does since R510; v1 counts it as used.
- MIG devices are enumerated with nvmlDeviceGetMaxMigDeviceCount and
  nvmlDeviceGetMigDeviceHandleByIndex (NOT_FOUND marks an empty slot).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpucheck.probe.parsers import decode_cuda_version
from gpucheck.snapshot import Gpu

# nvml.h return codes -> the suffix of pynvml's NVMLError_<Name> classes.
ERROR_NAMES = {
    1: "Uninitialized",
    2: "InvalidArgument",
    3: "NotSupported",
    4: "NoPermission",
    5: "AlreadyInitialized",
    6: "NotFound",
    7: "InsufficientSize",
    8: "InsufficientPower",
    9: "DriverNotLoaded",
    10: "Timeout",
    11: "IrqIssue",
    12: "LibraryNotFound",
    13: "FunctionNotFound",
    14: "CorruptedInforom",
    15: "GpuIsLost",
    16: "ResetRequired",
    17: "OperatingSystem",
    18: "LibRmVersionMismatch",
    19: "InUse",
    20: "Memory",
    21: "NoData",
    22: "VgpuEccNotSupported",
    23: "InsufficientResources",
    24: "FreqNotSupported",
    25: "ArgumentVersionMismatch",
    26: "Deprecated",
    27: "NotReady",
    28: "GpuNotFound",
    29: "InvalidState",
    999: "Unknown",
}
UNSUPPORTED = frozenset({"NotSupported", "FunctionNotFound"})
# Errors after which the next (older) call of a field is tried: the driver lacks the symbol,
# or does not know the struct version the bindings asked for.
_TRY_NEXT = frozenset({"FunctionNotFound", "ArgumentVersionMismatch", "NotSupported"})

# nvmlClocksEventReason* bits (nvml.h), in the names the snapshot uses.
CLOCK_EVENT_REASONS = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),  # nvmlClocksThrottleReasonBoardLimit
    (0x400, "reliability"),  # nvmlClocksThrottleReasonReliability
)
COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}

# Stable nvml.h enum values, spelled out so that a fake module need not define them.
_TEMPERATURE_GPU = 0
_CLOCK_SM, _CLOCK_MEM = 1, 2
_ECC_UNCORRECTED = 1
_ECC_VOLATILE, _ECC_AGGREGATE = 0, 1
_RETIRED_SBE, _RETIRED_DBE = 0, 1


def nvml_error_name(exc: BaseException) -> str:
    """ "LibRmVersionMismatch" for NVMLError_LibRmVersionMismatch (or for code 18)."""
    cls = type(exc).__name__
    if cls.startswith("NVMLError_") and len(cls) > len("NVMLError_"):
        return cls[len("NVMLError_") :]
    code = getattr(exc, "value", None)
    if isinstance(code, int):
        return ERROR_NAMES.get(code, f"Code{code}")
    return "Unknown"


def decode_clock_event_reasons(mask: int) -> tuple[str, ...]:
    """Bit mask -> names; bits this table does not know become "unknown_0x..."."""
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    rest = mask & ~sum(bit for bit, _ in CLOCK_EVENT_REASONS)
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"unknown_{bit:#x}")
            rest &= ~bit
        bit <<= 1
    return tuple(names)


Call = str | tuple[str, tuple, dict]  # a function name, or (name, args, kwargs)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).rstrip("\x00").strip()


@dataclass
class NvmlResult:
    driver_version: str | None = None
    cuda_version: str | None = None
    nvml_version: str | None = None
    error: str | None = None  # init failed (or "Timeout", "ModuleNotFound")
    errors: list[str] = field(default_factory=list)  # system-level calls that failed
    gpus: tuple[Gpu, ...] = ()
    count: int | None = None  # what nvmlDeviceGetCount said


class _GpuReader:
    """Reads fields of one GPU, sorting each failure into unsupported / error / lost."""

    def __init__(self, nv: Any, handle: Any):
        self.nv = nv
        self.handle = handle
        self.values: dict[str, Any] = {}
        self.unsupported: list[str] = []
        self.errors: dict[str, str] = {}
        self.lost: str | None = None

    def read(
        self,
        fields: tuple[str, ...],
        fn_names: tuple[Call, ...],
        args: tuple = (),
        convert: Callable[[Any], tuple] = lambda raw: (raw,),
    ) -> None:
        if self.lost:
            return
        # Newer calls first, older ones after: a call the bindings lack is skipped, and one the
        # driver lacks (FunctionNotFound) or rejects by version falls through to the next.
        failure: str | None = "FunctionNotFound"
        raw: Any = None
        for call in fn_names:
            fn_name, fn_args, kwargs = (call, args, {}) if isinstance(call, str) else call
            fn = getattr(self.nv, fn_name, None)
            if fn is None:
                continue
            try:
                raw = fn(self.handle, *fn_args, **kwargs)
            except self.nv.NVMLError as exc:
                failure = nvml_error_name(exc)
                if failure in _TRY_NEXT:
                    continue
                break
            except TypeError:  # bindings too old for a keyword such as version=
                continue
            failure = None
            break
        if failure is not None:
            if failure in UNSUPPORTED:
                self.unsupported.extend(fields)
            elif failure == "GpuIsLost":
                self.lost = failure
            else:
                self.errors.update(dict.fromkeys(fields, failure))
            return
        try:
            values = convert(raw)
        except (TypeError, ValueError, AttributeError, IndexError, KeyError):
            self.errors.update(dict.fromkeys(fields, "BadValue"))
            return
        self.values.update(zip(fields, values, strict=True))


def _read_gpu(nv: Any, index: int) -> Gpu:
    try:
        handle = nv.nvmlDeviceGetHandleByIndex(index)
    except nv.NVMLError as exc:
        return Gpu(index=index, error=nvml_error_name(exc))
    r = _GpuReader(nv, handle)
    r.read(("name",), ("nvmlDeviceGetName",), convert=lambda v: (_text(v),))
    r.read(("uuid",), ("nvmlDeviceGetUUID",), convert=lambda v: (_text(v),))
    r.read(("pci_bus_id",), ("nvmlDeviceGetPciInfo",), convert=lambda v: (_text(v.busId),))
    r.read(("vbios_version",), ("nvmlDeviceGetVbiosVersion",), convert=lambda v: (_text(v),))
    r.read(
        ("compute_capability",),
        ("nvmlDeviceGetCudaComputeCapability",),
        convert=lambda v: (f"{int(v[0])}.{int(v[1])}",),
    )
    memory: tuple[Call, ...] = ("nvmlDeviceGetMemoryInfo",)
    if hasattr(nv, "nvmlMemory_v2"):  # v2 first: "used" without the driver's reserved memory
        memory = (("nvmlDeviceGetMemoryInfo", (), {"version": nv.nvmlMemory_v2}), *memory)
    r.read(
        ("memory_total_bytes", "memory_used_bytes"),
        memory,
        convert=lambda v: (int(v.total), int(v.used)),
    )
    as_int = lambda v: (int(v),)  # noqa: E731 - a tiny converter used many times
    r.read(("pcie_gen_current",), ("nvmlDeviceGetCurrPcieLinkGeneration",), convert=as_int)
    r.read(("pcie_gen_max",), ("nvmlDeviceGetMaxPcieLinkGeneration",), convert=as_int)
    r.read(("pcie_width_current",), ("nvmlDeviceGetCurrPcieLinkWidth",), convert=as_int)
    r.read(("pcie_width_max",), ("nvmlDeviceGetMaxPcieLinkWidth",), convert=as_int)
    r.read(
        ("temperature_c",),
        ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"),
        (_TEMPERATURE_GPU,),
        as_int,
    )
    # NVML reports power in milliwatts.
    watts = lambda v: (round(int(v) / 1000.0, 3),)  # noqa: E731
    r.read(("power_draw_w",), ("nvmlDeviceGetPowerUsage",), convert=watts)
    r.read(("power_limit_w",), ("nvmlDeviceGetEnforcedPowerLimit",), convert=watts)
    r.read(("sm_clock_mhz",), ("nvmlDeviceGetClockInfo",), (_CLOCK_SM,), as_int)
    r.read(("sm_clock_max_mhz",), ("nvmlDeviceGetMaxClockInfo",), (_CLOCK_SM,), as_int)
    r.read(("mem_clock_mhz",), ("nvmlDeviceGetClockInfo",), (_CLOCK_MEM,), as_int)
    r.read(("mem_clock_max_mhz",), ("nvmlDeviceGetMaxClockInfo",), (_CLOCK_MEM,), as_int)
    r.read(
        ("clock_event_reasons",),
        ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"),
        convert=lambda v: (decode_clock_event_reasons(int(v)),),
    )
    r.read(
        ("utilization_percent",),
        ("nvmlDeviceGetUtilizationRates",),
        convert=lambda v: (int(v.gpu),),
    )
    r.read(("ecc_enabled",), ("nvmlDeviceGetEccMode",), convert=lambda v: (int(v[0]) == 1,))
    r.read(
        ("ecc_uncorrected_volatile",),
        ("nvmlDeviceGetTotalEccErrors",),
        (_ECC_UNCORRECTED, _ECC_VOLATILE),
        as_int,
    )
    r.read(
        ("ecc_uncorrected_aggregate",),
        ("nvmlDeviceGetTotalEccErrors",),
        (_ECC_UNCORRECTED, _ECC_AGGREGATE),
        as_int,
    )
    count = lambda v: (len(v),)  # noqa: E731
    r.read(("retired_pages_sbe",), ("nvmlDeviceGetRetiredPages",), (_RETIRED_SBE,), count)
    r.read(("retired_pages_dbe",), ("nvmlDeviceGetRetiredPages",), (_RETIRED_DBE,), count)
    r.read(
        ("retired_pages_pending",),
        ("nvmlDeviceGetRetiredPagesPendingStatus",),
        convert=lambda v: (int(v) == 1,),
    )
    r.read(
        ("remapped_rows_pending", "remapped_rows_failure"),
        ("nvmlDeviceGetRemappedRows",),
        convert=lambda v: (bool(v[2]), bool(v[3])),
    )
    r.read(
        ("persistence_mode",),
        ("nvmlDeviceGetPersistenceMode",),
        convert=lambda v: (int(v) == 1,),
    )
    r.read(("mig_enabled",), ("nvmlDeviceGetMigMode",), convert=lambda v: (int(v[0]) == 1,))
    if r.values.get("mig_enabled") and not r.lost:
        r.values["mig_devices"] = _mig_devices(nv, handle)
    r.read(
        ("compute_mode",),
        ("nvmlDeviceGetComputeMode",),
        convert=lambda v: (COMPUTE_MODES.get(int(v), f"unknown_{int(v)}"),),
    )
    return Gpu(
        index=index,
        unsupported=tuple(dict.fromkeys(r.unsupported)),
        field_errors=r.errors,
        error=r.lost,
        source="nvml",
        **r.values,
    )


def _mig_devices(nv: Any, handle: Any) -> tuple[str, ...] | None:
    """UUIDs ("MIG-...") of the MIG devices on a GPU in MIG mode; None when NVML cannot say."""
    count_fn = getattr(nv, "nvmlDeviceGetMaxMigDeviceCount", None)
    by_index = getattr(nv, "nvmlDeviceGetMigDeviceHandleByIndex", None)
    if count_fn is None or by_index is None:
        return None
    try:
        slots = int(count_fn(handle))
    except nv.NVMLError:
        return None
    found = []
    for i in range(slots):
        try:
            found.append(_text(nv.nvmlDeviceGetUUID(by_index(handle, i))))
        except nv.NVMLError as exc:
            if nvml_error_name(exc) != "NotFound":  # NotFound: an empty slot
                return None
    return tuple(found)


def _system_call(nv: Any, result: NvmlResult, fn_name: str) -> Any:
    fn = getattr(nv, fn_name, None)
    if fn is None:
        result.errors.append(f"{fn_name}: missing from pynvml")
        return None
    try:
        return fn()
    except nv.NVMLError as exc:
        result.errors.append(f"{fn_name}: {nvml_error_name(exc)}")
        return None


def query_nvml(result: NvmlResult | None = None) -> NvmlResult:
    """Query NVML synchronously, filling `result` as it goes (so that a caller that stops
    waiting keeps what was read). Shuts NVML down again whenever init succeeded."""
    result = NvmlResult() if result is None else result
    try:
        import pynvml as nv
    except ImportError:
        result.error = "ModuleNotFound"
        return result
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        result.error = nvml_error_name(exc)
        return result
    except OSError as exc:  # very old bindings let the loader's error through
        result.error = "LibraryNotFound"
        result.errors.append(f"nvmlInit: {exc}")
        return result
    try:
        driver = _system_call(nv, result, "nvmlSystemGetDriverVersion")
        result.driver_version = _text(driver) if driver is not None else None
        cuda = _system_call(nv, result, "nvmlSystemGetCudaDriverVersion")
        result.cuda_version = decode_cuda_version(cuda) if isinstance(cuda, int) else None
        nvml_version = _system_call(nv, result, "nvmlSystemGetNVMLVersion")
        result.nvml_version = _text(nvml_version) if nvml_version is not None else None
        count = _system_call(nv, result, "nvmlDeviceGetCount")
        if isinstance(count, int):
            result.count = count
            for i in range(count):
                result.gpus = (*result.gpus, _read_gpu(nv, i))
    finally:
        try:
            nv.nvmlShutdown()
        except nv.NVMLError as exc:
            result.errors.append(f"nvmlShutdown: {nvml_error_name(exc)}")
    return result


class NvmlProbe:
    """Runs `query_nvml` in a daemon thread; `wait` gives up when NVML stalls.

    `timeout` bounds the wait for the next GPU to answer, not the whole query: on an 8-GPU box
    without persistence mode each GPU initialises in turn, and 8 slow but working GPUs must not
    read as a hung NVML. `max_total` (default 3 x timeout) bounds the whole wait. On giving up,
    the GPUs read so far are kept, and the rest are recorded with error "Timeout".
    """

    def __init__(self, timeout: float, max_total: float | None = None):
        self.timeout = timeout
        self.max_total = max(timeout, 3 * timeout if max_total is None else max_total)
        self._result = NvmlResult()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="gpucheck-nvml", daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        try:
            query_nvml(self._result)
        except Exception as exc:  # noqa: BLE001 - a bug here must surface as data, not vanish
            self._result = NvmlResult(
                error="ProbeError", errors=[f"NVML probe failed: {type(exc).__name__}: {exc}"]
            )
        self._done = True

    def wait(self) -> NvmlResult:
        end = self._started + self.max_total
        seen, last_progress = -1, self._started
        while True:
            now = time.monotonic()
            if len(self._result.gpus) != seen:
                seen, last_progress = len(self._result.gpus), now
            left = min(end, last_progress + self.timeout) - now
            if left <= 0:
                break
            self._thread.join(min(left, 0.05))
            if not self._thread.is_alive():
                break
        if not self._thread.is_alive() and self._done:
            return self._result
        return self._partial()

    def _partial(self) -> NvmlResult:
        got = self._result
        waited = time.monotonic() - self._started
        gpus = tuple(got.gpus)
        missing = tuple(
            Gpu(index=i, error="Timeout", source="nvml") for i in range(len(gpus), got.count or 0)
        )
        note = f"NVML did not answer within {waited:.0f} s"
        if gpus:
            note += f" ({len(gpus)} of {got.count} GPU(s) read before that)"
        return NvmlResult(
            driver_version=got.driver_version,
            cuda_version=got.cuda_version,
            nvml_version=got.nvml_version,
            error="Timeout",
            errors=[*got.errors, note],
            gpus=gpus + missing,
            count=got.count,
        )


def probe_nvml(timeout: float = 10.0) -> NvmlResult:
    """Query NVML with a timeout (see NvmlProbe)."""
    return NvmlProbe(timeout).wait()
