"""Every recorded snapshot describes a machine that can exist.

Rules fire on values: a fixture with a value no real GPU or driver produces tests a rule
against a machine nobody has. Each check below states one physical or API fact (with its
source) and holds it against every fixture, generated and recorded.
"""

from __future__ import annotations

import pathlib

import pytest
from factories import MODELS

from gpucheck.snapshot import Gpu, Snapshot

SNAPSHOTS = pathlib.Path(__file__).parent / "fixtures" / "snapshots"
ALL = sorted(SNAPSHOTS.glob("*.json")) + sorted((SNAPSHOTS / "recorded").glob("*.json"))
HBM = {m.name: m.mem_clock_max for m in MODELS.values() if m.hbm}
# What the torch child can report for its exact-input check on a working device: 0.0.
EXACT = 0.0


def _load(path: pathlib.Path) -> Snapshot:
    return Snapshot.from_json(path.read_text())


def impossible(s: Snapshot) -> list[str]:
    """Why this snapshot cannot come from a real machine (empty: it can)."""
    why: list[str] = []
    for g in s.gpus:
        why += [f"GPU {g.index}: {w}" for w in _gpu(g)]
    if len({g.index for g in s.gpus}) != len(s.gpus):
        why.append("two GPUs share an NVML index")
    if sorted(g.index for g in s.gpus) != list(range(len(s.gpus))):
        why.append("NVML indices are not 0..n-1 (nvmlDeviceGetCount counts every GPU)")
    rt = s.torch_runtime
    if rt is not None and rt.status == "ok":
        if rt.cuda_available is False and rt.devices:
            why.append("torch describes devices although CUDA is not available")
        if rt.devices and rt.device_count is not None and rt.device_count != len(rt.devices):
            why.append("device_count differs from the devices described")
        for d in rt.devices:
            if d.matmul_ok and d.matmul_max_error not in (None, EXACT):
                # the child's inputs make a working GPU exact (gpucheck/probe/_torch_child.py)
                why.append(f"cuda:{d.index}: matmul ok with error {d.matmul_max_error}")
            if d.matmul_ok is True and d.error:
                why.append(f"cuda:{d.index}: matmul ok and an error")
        usable = [g for g in s.gpus if g.error is None]
        migs = sum(len(g.mig_devices or ()) for g in s.gpus)
        if s.gpus and rt.device_count and rt.device_count > len(usable) + migs:
            why.append("CUDA counts more devices than NVML has usable GPUs and MIG devices")
    return why


def _gpu(g: Gpu) -> list[str]:
    why = []
    if g.error is not None:
        # A GPU NVML cannot open (lost, no permission) yields no field at all: every query
        # needs a working handle (nvml.h).
        filled = [
            k
            for k, v in vars(g).items()
            if k not in ("index", "error", "source", "unsupported", "field_errors")
            and v is not None
        ]
        if filled:
            why.append(f"{g.error} but {', '.join(filled)} known")
        return why
    pairs = (
        ("pcie_gen_current", "pcie_gen_max"),
        ("pcie_width_current", "pcie_width_max"),
        ("sm_clock_mhz", "sm_clock_max_mhz"),
        ("mem_clock_mhz", "mem_clock_max_mhz"),
        ("memory_used_bytes", "memory_total_bytes"),
    )
    for cur, top in pairs:
        a, b = getattr(g, cur), getattr(g, top)
        if a is not None and b is not None and a > b:
            why.append(f"{cur} {a} above {top} {b}")
    if g.power_draw_w is not None and g.power_limit_w and g.power_draw_w > 1.1 * g.power_limit_w:
        why.append("power draw more than 10% over the enforced limit")
    if g.temperature_c is not None and not 0 <= g.temperature_c <= 110:
        why.append(f"temperature {g.temperature_c} C")
    if g.utilization_percent is not None and not 0 <= g.utilization_percent <= 100:
        why.append(f"utilization {g.utilization_percent}%")
    if g.name in HBM and g.mem_clock_mhz is not None and g.mem_clock_mhz != HBM[g.name]:
        # HBM runs at one clock: nvidia-smi shows 2619 (H100), 1593 (A100), 877 (V100) at idle
        why.append(f"HBM memory clock {g.mem_clock_mhz} MHz, not {HBM[g.name]}")
    if g.mig_enabled and g.utilization_percent is not None:
        why.append("utilization reported in MIG mode (NVML answers NotSupported)")
    if g.mig_devices and not g.mig_enabled:
        why.append("MIG devices without MIG mode")
    gpu_idle = "gpu_idle" in (g.clock_event_reasons or ())
    if gpu_idle and (g.utilization_percent or 0) >= 50:
        why.append("clock reason gpu_idle at >= 50% utilization")
    return why


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_fixture_is_physically_possible(path):
    assert impossible(_load(path)) == []


def test_the_checks_catch_what_the_old_fixtures_had():
    # The values issue 9 found in the fixtures, each one caught.
    from dataclasses import replace

    from factories import gpu

    h100 = gpu("h100")
    assert _gpu(replace(h100, mem_clock_mhz=405))  # HBM at a GDDR idle clock
    assert _gpu(replace(h100, mig_enabled=True, utilization_percent=0))  # MIG utilisation 0
    assert _gpu(Gpu(index=2, pci_bus_id="00000000:47:00.0", error="GpuIsLost"))
    assert _gpu(replace(h100, pcie_gen_current=6))
    s = _load(SNAPSHOTS / "healthy_h100_x8.json")
    rt = s.torch_runtime
    bad = replace(rt, devices=(replace(rt.devices[0], matmul_max_error=1.9e-6), *rt.devices[1:]))
    assert impossible(replace(s, torch_runtime=bad))
