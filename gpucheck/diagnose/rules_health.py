"""Rules GC301-GC312: GPU health (lost GPUs, ECC, retired pages, row remapping, throttling,
PCIe link, MIG, persistence and compute mode).

Sources: nvml.h and `nvidia-smi -q` field documentation (ECC, retired pages, remapped rows,
clock event reasons, PCIe link, MIG, persistence and compute mode; the PCIe link trains down at
idle by design); NVIDIA's MIG user guide; Xid 79 (GPU has fallen off the bus) in NVIDIA's Xid
error documentation; DCGM's level-1 diagnostics (pending retirement, row-remap pending/failure,
uncorrected volatile ECC > 0, persistence mode) and DCGM DcgmGpuHardwareLimits.h for the
retired-page limits (60, soft limit 15); nvml.h nvmlDeviceGetHandleByIndex_v2
(NVML_ERROR_NO_PERMISSION for GPUs the process may not open).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpucheck.diagnose import facts, rule
from gpucheck.findings import Finding, Severity
from gpucheck.snapshot import Gpu, Snapshot

ERROR, WARN, INFO = Severity.ERROR, Severity.WARN, Severity.INFO

RETIRED_PAGES_LIMIT = 60  # DCGM_LIMIT_MAX_RETIRED_PAGES
RETIRED_PAGES_SOFT_LIMIT = 15  # DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT
BUSY_PERCENT = 50  # utilisation at which PCIe link and power-cap readings count as "under load"

# Clock event reasons that mean the hardware is slowing the GPU down.
_HW_REASONS = (
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sw_thermal_slowdown",
)
# Reasons that are normal and never reported: idle, user-set clocks, display clocks, sync boost.
_IGNORED_REASONS = (
    "gpu_idle",
    "applications_clocks_setting",
    "display_clock_setting",
    "sync_boost",
)

DRAIN = "Drain the node (stop scheduling jobs on this GPU)"


def _who(g: Gpu) -> str:
    what = ", ".join(x for x in (g.name, g.pci_bus_id) if x)
    return f"GPU {g.index} ({what})" if what else f"GPU {g.index}"


_LOST_FIX = {
    "GpuIsLost": (
        "has fallen off the bus",
        f"{DRAIN}, power-cycle the machine (a cold reboot), reseat the card and check "
        "its power cables, PSU and cooling, update the system BIOS; RMA it if it happens again. "
        "`sudo dmesg | grep -i xid` shows Xid 79 when the GPU fell off the bus.",
    ),
    "ResetRequired": (
        "needs a reset",
        "Reset it when no process uses it: `sudo nvidia-smi -r -i {i}` (or reboot).",
    ),
    "CorruptedInforom": (
        "has a corrupted infoROM",
        f"{DRAIN} and contact the vendor (RMA); `nvidia-smi -q` shows the infoROM state.",
    ),
    "Timeout": (
        "did not answer NVML in time",
        "Run `nvidia-smi -q -i {i}`: if it hangs too, check `sudo dmesg | grep -i xid` and reset "
        "the GPU (`sudo nvidia-smi -r -i {i}`) or reboot. Without persistence mode every NVML "
        "call initialises the GPU: `sudo nvidia-smi -pm 1` makes slow answers fast.",
    ),
    "InsufficientPower": (
        "reports insufficient power (external power cables not attached?)",
        "Power off and connect the GPU's PCIe/12VHPWR power cables firmly; check the PSU.",
    ),
}


@rule("GC301")
def gpu_error(s: Snapshot) -> Iterator[Finding]:
    """GC301: NVML could not use a GPU at all (GpuIsLost, ResetRequired, ...)."""
    for g in s.gpus:
        if g.error is None or g.error == "NoPermission":
            continue
        what, fix = _LOST_FIX.get(
            g.error,
            (
                f"failed ({g.error})",
                "Run `nvidia-smi -q -i {i}` and `sudo dmesg | grep -i xid`; reboot.",
            ),
        )
        others = len(facts.healthy_gpus(s))
        ev = [f"{_who(g)}: NVML {g.error}"]
        if others:
            ev.append(f"{others} other GPU(s) respond normally")
        yield Finding(
            "GC301",
            ERROR,
            what[0].upper() + what[1:],
            tuple(ev),
            fix=fix.format(i=g.index),
            gpu=g.index,
        )


@rule("GC312")
def gpu_not_ours(s: Snapshot) -> Iterator[Finding]:
    """GC312: GPUs NVML counts but this process may not open (not given to this job)."""
    denied = [g for g in s.gpus if g.error == "NoPermission"]
    if not denied:
        return
    usable = len(facts.healthy_gpus(s))
    idx = ", ".join(str(g.index) for g in denied)
    yield Finding(
        "GC312",
        INFO,
        f"{len(denied)} of {len(s.gpus)} GPU(s) are not available to this process",
        (
            f"NVML counts {len(s.gpus)} GPU(s) but refuses a handle to GPU {idx} (NoPermission)",
            f"{usable} GPU(s) usable by this process are checked",
        ),
        fix="Nothing to fix when this runs inside a job that was given fewer GPUs (Slurm "
        "`--gres=gpu:N` with ConstrainDevices, a container's device cgroup): the other GPUs "
        "belong to other jobs. To check them, run gpucheck in a job that holds them, or as a "
        "user with access to every /dev/nvidia* node.",
        gpu=denied[0].index if len(denied) == 1 else None,
    )


@rule("GC302")
def ecc_uncorrected(s: Snapshot) -> Iterator[Finding]:
    """GC302: uncorrectable ECC errors since the last driver load."""
    for g in facts.healthy_gpus(s):
        n = g.ecc_uncorrected_volatile
        if not n:
            continue
        ev = [f"{_who(g)}: {n} uncorrected ECC error(s) since the driver loaded (volatile)"]
        if g.ecc_uncorrected_aggregate is not None:
            ev.append(f"lifetime (aggregate): {g.ecc_uncorrected_aggregate}")
        yield Finding(
            "GC302",
            ERROR,
            "Uncorrectable ECC memory errors",
            tuple(ev),
            fix=f"{DRAIN}; reset the GPU (`sudo nvidia-smi -r -i {g.index}`) or reboot so "
            "that the bad memory is retired/remapped; `nvidia-smi -q -d ECC` shows where. RMA it "
            "if errors return.",
            gpu=g.index,
        )


@rule("GC303")
def retired_pages(s: Snapshot) -> Iterator[Finding]:
    """GC303: page retirement (Volta and older): pending retirement or many retired pages."""
    for g in facts.healthy_gpus(s):
        sbe, dbe = g.retired_pages_sbe or 0, g.retired_pages_dbe or 0
        total = sbe + dbe
        pending = bool(g.retired_pages_pending)
        if total >= RETIRED_PAGES_LIMIT:
            sev, title = (
                ERROR,
                f"{total} retired memory pages (RMA threshold {RETIRED_PAGES_LIMIT})",
            )
            fix = f"{DRAIN} and RMA this GPU."
        elif pending or total >= RETIRED_PAGES_SOFT_LIMIT or dbe >= RETIRED_PAGES_SOFT_LIMIT:
            sev = WARN
            title = (
                "Memory pages are waiting to be retired"
                if pending
                else f"Many retired memory pages ({total})"
            )
            fix = (
                f"Reset the GPU to retire the pending pages: `sudo nvidia-smi -r -i {g.index}` (or "
                f"reboot). Watch the count: at {RETIRED_PAGES_LIMIT} retired pages the GPU is due for RMA."
            )
        else:
            continue
        ev = (
            f"{_who(g)}: retired pages single-bit {sbe}, double-bit {dbe}",
            f"retirement pending: {pending}",
        )
        yield Finding("GC303", sev, title, ev, fix=fix, gpu=g.index)


@rule("GC304", "GC305")
def remapped_rows(s: Snapshot) -> Iterator[Finding]:
    """GC304 (row remapping pending: reset) and GC305 (row remapping failed: RMA); Ampere and newer."""
    for g in facts.healthy_gpus(s):
        if g.remapped_rows_failure:
            yield Finding(
                "GC305",
                ERROR,
                "Memory row remapping failed",
                (f"{_who(g)}: remapped_rows.failure = yes",),
                fix=f"{DRAIN} and RMA this GPU: it has run out of spare rows or could not remap one.",
                gpu=g.index,
            )
        elif g.remapped_rows_pending:
            yield Finding(
                "GC304",
                WARN,
                "Memory row remapping is pending: the GPU needs a reset",
                (f"{_who(g)}: remapped_rows.pending = yes",),
                fix=f"Reset the GPU when idle: `sudo nvidia-smi -r -i {g.index}` (or reboot) to apply the remap.",
                gpu=g.index,
            )


def _load(g: Gpu) -> str:
    return (
        f"utilization {g.utilization_percent}%"
        if g.utilization_percent is not None
        else "utilization unknown"
    )


def _busy(g: Gpu) -> bool:
    return g.utilization_percent is not None and g.utilization_percent >= BUSY_PERCENT


@rule("GC306", "GC307")
def throttling(s: Snapshot) -> Iterator[Finding]:
    """GC306 (thermal / power brake / hardware slowdown) and GC307 (power cap under load)."""
    for g in facts.healthy_gpus(s):
        reasons = tuple(r for r in (g.clock_event_reasons or ()) if r not in _IGNORED_REASONS)
        hw = [r for r in reasons if r in _HW_REASONS]
        ev = [f"{_who(g)}: clock event reasons {', '.join(reasons) or 'none'}", _load(g)]
        if g.temperature_c is not None:
            ev.append(f"temperature {g.temperature_c} C")
        if g.power_draw_w is not None and g.power_limit_w is not None:
            ev.append(f"power {g.power_draw_w:.0f} W of {g.power_limit_w:.0f} W limit")
        if g.sm_clock_mhz is not None and g.sm_clock_max_mhz:
            ev.append(f"SM clock {g.sm_clock_mhz} of {g.sm_clock_max_mhz} MHz")
        if hw:
            yield Finding(
                "GC306",
                WARN,
                f"Throttled by {', '.join(hw)}",
                tuple(ev),
                fix="Check cooling and airflow (fans, dust, inlet temperature), the power cables and "
                "PSU; `nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER` shows the limits. Throughput "
                "drops while this lasts.",
                gpu=g.index,
            )
        elif "sw_power_cap" in reasons and (g.utilization_percent is None or _busy(g)):
            yield Finding(
                "GC307",
                INFO,
                "Running at its power limit",
                tuple(ev),
                fix="Normal under heavy load. To trade power for speed, check the limit with "
                "`nvidia-smi -q -d POWER` and raise it within the card's range with `sudo "
                f"nvidia-smi -i {g.index} -pl <watts>`.",
                gpu=g.index,
            )


@rule("GC308")
def pcie_link(s: Snapshot) -> Iterator[Finding]:
    """GC308: PCIe link below its maximum (judged under load only)."""
    for g in facts.healthy_gpus(s):
        gen_low = (
            g.pcie_gen_current is not None
            and g.pcie_gen_max
            and g.pcie_gen_current < g.pcie_gen_max
        )
        width_low = (
            g.pcie_width_current is not None
            and g.pcie_width_max
            and g.pcie_width_current < g.pcie_width_max
        )
        if not (gen_low or width_low):
            continue
        ev = (
            f"{_who(g)}: PCIe gen {g.pcie_gen_current} of {g.pcie_gen_max}, "
            f"width x{g.pcie_width_current} of x{g.pcie_width_max}",
            _load(g),
        )
        if _busy(g):
            yield Finding(
                "GC308",
                WARN,
                "PCIe link runs below its maximum under load",
                ev,
                fix="Reseat the card in a CPU-attached x16 slot, use a riser rated for the PCIe "
                "generation, and check the BIOS PCIe speed setting; `sudo lspci -vv` shows LnkSta.",
                gpu=g.index,
            )
        else:
            yield Finding(
                "GC308",
                INFO,
                "PCIe link is below its maximum while idle (normal power saving)",
                ev,
                fix="Nothing to do: the link drops at idle by design. It is judged under load only "
                f"(utilization >= {BUSY_PERCENT}%); `gpucheck bench` samples it while the GPU works.",
                gpu=g.index,
            )


@rule("GC309")
def mig(s: Snapshot) -> Iterator[Finding]:
    """GC309: MIG mode is on (the one-device view), or on without any MIG device."""
    for g in facts.healthy_gpus(s):
        if not g.mig_enabled:
            continue
        devs = g.mig_devices
        if devs is not None and not devs:
            yield Finding(
                "GC309",
                WARN,
                "MIG is enabled but has no instances: CUDA sees no device on this GPU",
                (f"{_who(g)}: MIG enabled, 0 MIG devices",),
                fix=f"List the profiles (`nvidia-smi mig -lgip -i {g.index}`) and create instances with "
                f"compute instances (`sudo nvidia-smi mig -i {g.index} -cgi <profile> -C`), or turn MIG off "
                f"(`sudo nvidia-smi -i {g.index} -mig 0`, then reset the GPU).",
                gpu=g.index,
            )
            continue
        example = devs[0] if devs else "MIG-<uuid from nvidia-smi -L>"
        ev = [f"{_who(g)}: MIG enabled"]
        if devs:
            ev.append(f"{len(devs)} MIG device(s): {', '.join(devs[:3])}")
        yield Finding(
            "GC309",
            INFO,
            "Split into MIG instances: each CUDA process sees one MIG device",
            tuple(ev),
            fix=f"Pick the instance for a process with `export CUDA_VISIBLE_DEVICES={example}`. "
            "Multi-GPU training across MIG instances is not possible; disable MIG for it "
            f"(`sudo nvidia-smi -i {g.index} -mig 0`, then reset the GPU).",
            gpu=g.index,
        )


@rule("GC310")
def persistence_off(s: Snapshot) -> Iterator[Finding]:
    """GC310: persistence mode off (Linux): the driver tears down and re-initialises the GPU."""
    if s.system.os != "linux":
        return
    off = [g for g in facts.healthy_gpus(s) if g.persistence_mode is False]
    if not off:
        return
    idx = ", ".join(str(g.index) for g in off)
    yield Finding(
        "GC310",
        INFO,
        "Persistence mode is off" + (f" on GPU {idx}" if len(off) > 1 else ""),
        (f"persistence_mode = Disabled on GPU {idx}",),
        fix="`sudo nvidia-smi -pm 1` (or enable the nvidia-persistenced service) keeps the driver "
        "initialised between jobs, so the first CUDA call of each process starts faster.",
        gpu=off[0].index if len(off) == 1 else None,
    )


@rule("GC311")
def compute_mode(s: Snapshot) -> Iterator[Finding]:
    """GC311: compute mode Prohibited (no CUDA process may use the GPU) or Exclusive Process."""
    for g in facts.healthy_gpus(s):
        if g.compute_mode == "prohibited":
            yield Finding(
                "GC311",
                ERROR,
                "Compute mode Prohibited: no CUDA process can use this GPU",
                (f"{_who(g)}: compute mode prohibited",),
                fix=f"`sudo nvidia-smi -i {g.index} -c DEFAULT`",
                gpu=g.index,
            )
        elif g.compute_mode == "exclusive_process":
            yield Finding(
                "GC311",
                INFO,
                "Compute mode Exclusive Process: one CUDA process at a time",
                (f"{_who(g)}: compute mode exclusive_process",),
                fix=f"Fine for one job per GPU; to share it: `sudo nvidia-smi -i {g.index} -c DEFAULT`.",
                gpu=g.index,
            )
