"""NVML samples while the benchmark runs: PCIe link, clocks, throttle reasons, temperature, power.

The snapshot is taken at idle, where a PCIe link below its maximum is normal power saving
(the link trains down when idle; nvidia-smi's PCIe "Current" is only meaningful under load).
Sampling the same GPU while the benchmark keeps it busy is what lets GC308 judge the link.

A daemon thread owns its own NVML session (nvmlInit is reference counted, so it coexists with
the probe's); each round is bounded, and `stop` never waits longer than `timeout`: a wedged
NVML leaves a daemon thread behind, never a hung gpucheck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gpucheck.probe.nvml import (
    _CLOCK_MEM,
    _CLOCK_SM,
    _TEMPERATURE_GPU,
    _GpuReader,
    decode_clock_event_reasons,
)

INTERVAL_S = 1.0
MAX_SAMPLES = 900  # per GPU: 15 minutes at one a second


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since sampling started
    gpu: int  # NVML index
    utilization_percent: int | None = None
    pcie_gen_current: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_current: int | None = None
    pcie_width_max: int | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    clock_event_reasons: tuple[str, ...] | None = None
    temperature_c: int | None = None
    power_draw_w: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.clock_event_reasons is not None:
            d["clock_event_reasons"] = list(self.clock_event_reasons)
        return d


def read_sample(nv: Any, handle: Any, gpu: int, t: float) -> Sample:
    """One sample through the probe's reader (same fallbacks: older calls on older drivers)."""
    r = _GpuReader(nv, handle)
    as_int = lambda v: (int(v),)  # noqa: E731
    r.read(
        ("utilization_percent",),
        ("nvmlDeviceGetUtilizationRates",),
        convert=lambda v: (int(v.gpu),),
    )
    r.read(("pcie_gen_current",), ("nvmlDeviceGetCurrPcieLinkGeneration",), convert=as_int)
    r.read(("pcie_gen_max",), ("nvmlDeviceGetMaxPcieLinkGeneration",), convert=as_int)
    r.read(("pcie_width_current",), ("nvmlDeviceGetCurrPcieLinkWidth",), convert=as_int)
    r.read(("pcie_width_max",), ("nvmlDeviceGetMaxPcieLinkWidth",), convert=as_int)
    r.read(("sm_clock_mhz",), ("nvmlDeviceGetClockInfo",), (_CLOCK_SM,), as_int)
    r.read(("mem_clock_mhz",), ("nvmlDeviceGetClockInfo",), (_CLOCK_MEM,), as_int)
    r.read(
        ("clock_event_reasons",),
        ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"),
        convert=lambda v: (decode_clock_event_reasons(int(v)),),
    )
    r.read(
        ("temperature_c",),
        ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"),
        (_TEMPERATURE_GPU,),
        as_int,
    )
    r.read(
        ("power_draw_w",),
        ("nvmlDeviceGetPowerUsage",),
        convert=lambda v: (round(int(v) / 1000.0, 3),),
    )
    return Sample(t=round(t, 3), gpu=gpu, **r.values)


class NvmlSampler:
    """Samples the given NVML GPU indices every `interval` seconds until `stop()`."""

    def __init__(self, gpus: Sequence[int], interval: float = INTERVAL_S, timeout: float = 5.0):
        self.gpus = tuple(gpus)
        self.interval = interval
        self.timeout = timeout
        self.samples: list[Sample] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def start(self) -> NvmlSampler:
        if self.gpus:
            self._t0 = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="gpucheck-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop and return the samples; waits at most `timeout` for a round in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout)
            if self._thread.is_alive():
                self.error = f"NVML sampling did not stop within {self.timeout:g} s"
        return list(self.samples)

    def _run(self) -> None:
        try:
            import pynvml as nv
        except ImportError:
            self.error = "pynvml not installed"
            return
        try:
            nv.nvmlInit()
        except (nv.NVMLError, OSError) as exc:
            self.error = f"nvmlInit: {type(exc).__name__}"
            return
        try:
            handles = {i: nv.nvmlDeviceGetHandleByIndex(i) for i in self.gpus}
            while not self._stop.is_set():
                for i, h in handles.items():
                    if len(self.samples) < MAX_SAMPLES * len(handles):
                        self.samples.append(read_sample(nv, h, i, time.monotonic() - self._t0))
                self._stop.wait(self.interval)
        except nv.NVMLError as exc:
            self.error = f"NVML sampling stopped: {type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - a bug in sampling must not end the bench
            self.error = f"NVML sampling failed: {type(exc).__name__}: {exc}"
        finally:
            try:
                nv.nvmlShutdown()
            except nv.NVMLError:
                pass


def busy(samples: Sequence[Sample], threshold: int) -> list[Sample]:
    """The samples taken while the GPU was at least `threshold` percent utilised."""
    return [
        s
        for s in samples
        if s.utilization_percent is not None and s.utilization_percent >= threshold
    ]
