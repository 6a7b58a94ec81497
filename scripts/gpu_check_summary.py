"""Summarise what `scripts/gpu-check.sh` learnt about issue 9's items 2, 5, 7 and 9.

Reads the reports and snapshots the script wrote to its output folder and prints one block
per item; never fails on a missing or partial file (it says so instead).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _load(folder: Path, name: str) -> dict | None:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError) as exc:
        print(f"  {name}: unreadable ({type(exc).__name__})")
        return None


def _snapshot(doc: dict | None) -> dict | None:
    if doc is None:
        return None
    return doc.get("snapshot", doc)


def tf32(folder: Path) -> None:
    print("item 2: TF32 forced (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1)")
    snap = _snapshot(_load(folder, "snapshot-tf32.json"))
    rep = _load(folder, "report-tf32.json")
    if snap:
        print(
            f"  env recorded: {snap['system'].get('env', {}).get('TORCH_ALLOW_TF32_CUBLAS_OVERRIDE')}"
        )
        for d in (snap.get("torch_runtime") or {}).get("devices", []):
            print(
                f"  cuda:{d['index']} {d.get('name')}: ok={d.get('matmul_ok')} "
                f"error={d.get('matmul_max_error')} tolerance={d.get('matmul_tolerance')} "
                f"precision={d.get('matmul_precision')} bf16={d.get('bf16_supported')}"
            )
    if rep:
        gc215 = [f for f in rep.get("findings", []) if f["id"] == "GC215"]
        print(f"  GC215 findings: {len(gc215)} (expected 0)")


def join(folder: Path) -> None:
    print("item 5: CUDA index -> NVML index")
    for name in ("snapshot.json", "snapshot-cvd.json"):
        snap = _snapshot(_load(folder, name))
        if not snap:
            continue
        by_uuid = {g.get("uuid"): g["index"] for g in snap.get("gpus", [])}
        vis = snap["system"].get("env", {}).get("CUDA_VISIBLE_DEVICES")
        for d in (snap.get("torch_runtime") or {}).get("devices", []):
            print(
                f"  {name} (CUDA_VISIBLE_DEVICES={vis}): cuda:{d['index']} uuid={d.get('uuid')} "
                f"bus={d.get('pci_bus_id')} -> NVML GPU {by_uuid.get(d.get('uuid'))}"
            )


def load(folder: Path) -> None:
    print("item 7: NVML sampled while the benchmark ran")
    rep = _load(folder, "report.json")
    if not rep:
        return
    for b in rep.get("bench") or []:
        samples = b.get("samples") or []
        busy = [s for s in samples if (s.get("utilization_percent") or 0) >= 50]
        line = f"  {b['device']} (NVML GPU {b.get('gpu')}): {b['status']} in {b['duration_s']} s, "
        line += f"{len(samples)} samples, {len(busy)} at >= 50% utilization"
        if busy:
            gen = statistics.median_low([s.get("pcie_gen_current") or 0 for s in busy])
            width = statistics.median_low([s.get("pcie_width_current") or 0 for s in busy])
            line += (
                f"; PCIe gen {gen}/{busy[0].get('pcie_gen_max')} x{width}/"
                f"{busy[0].get('pcie_width_max')}, max {max(s.get('temperature_c') or 0 for s in busy)} C, "
                f"max {max(s.get('power_draw_w') or 0 for s in busy):.0f} W, reasons "
                f"{sorted({r for s in busy for r in (s.get('clock_event_reasons') or [])})}"
            )
        if b.get("sampling_error"):
            line += f"; sampling error: {b['sampling_error']}"
        print(line)
    for f in rep.get("findings", []):
        if f["id"] == "GC308":
            print(f"  GC308 {f['severity']} gpu={f.get('gpu')}: {f['title']}")


def deadline(folder: Path) -> None:
    print("item 9: whole-run --timeout 40 with --bench-timeout 600")
    try:
        steps = (folder / "steps.txt").read_text().splitlines()
        print("  " + next((s for s in steps if s.startswith("deadline:")), "no step line"))
    except OSError:
        print("  steps.txt missing")
    rep = _load(folder, "report-deadline.json")
    if rep:
        for b in rep.get("bench") or []:
            print(
                f"  {b['device']}: {b['status']} not_run={b.get('not_run')} "
                f"{b['duration_s']} s: {b.get('error')}"
            )


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
    for part in (tf32, join, load, deadline):
        try:
            part(folder)
        except (KeyError, TypeError, ValueError) as exc:  # a partial report: say so, go on
            print(f"  (could not read: {type(exc).__name__}: {exc})")


if __name__ == "__main__":
    main()
