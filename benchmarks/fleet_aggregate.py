"""`make bench`: time `gpucheck fleet` over 1,000 node reports (target: under 2 s).

The reports are real `gpucheck check --json` reports of the recorded 8x H100 snapshot, each
given its own Slurm node name, a smoke-benchmark figure per GPU, and a driver that differs on
a few nodes, so that the fleet has drift and outliers to find. Each run is a fresh process
(`python -m gpucheck fleet DIR --json FILE --nodes gpu[0001-1000]`), as an admin runs it; the
median of the runs is reported, and peak memory for a quarter of the fleet and the whole of it,
whose ratio shows that memory does not grow with the reports read (only a summary per node).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "fixtures" / "snapshots" / "healthy_h100_x8.json"
TARGET_S = 2.0


def base_report() -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "gpucheck", "check", "--from-snapshot", str(SNAPSHOT), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return json.loads(out.stdout)


def write_fleet(folder: Path, n: int, base: dict) -> None:
    for i in range(1, n + 1):
        doc = json.loads(json.dumps(base))
        node = f"gpu{i:04d}"
        doc["snapshot"]["identity"] = {
            "hostname": node,
            "slurm_node_name": node,
            "machine_id": None,
        }
        if i % 97 == 0:
            doc["snapshot"]["driver"]["version"] = "550.54.14"
        slow = 0.8 if i % 211 == 0 else 1.0
        doc["bench"] = [
            {
                "device": f"cuda:{g}",
                "gpu_name": "NVIDIA H100 80GB HBM3",
                "preset": "base",
                "status": "ok",
                "duration_s": 30.0,
                "error": None,
                "result": {"train": {"samples_per_s": 800.0 * slow + g}, "eval": {"f1": 0.9}},
            }
            for g in range(8)
        ]
        (folder / f"{node}.json").write_text(json.dumps(doc))


def run_fleet(folder: Path, n: int) -> tuple[float, float, int, dict]:
    """(wall s, CPU s, peak RSS KiB, fleet summary) of one fresh `gpucheck fleet` process."""
    out = folder.parent / f"fleet-{folder.name}.json"
    code = (
        "import resource, sys\n"
        "from gpucheck.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(u.ru_utime + u.ru_stime, u.ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    argv = ["fleet", str(folder), "--json", str(out), "--nodes", f"gpu[0001-{n:04d}]"]
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300
    )
    seconds = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"gpucheck fleet failed ({r.returncode}): {r.stderr[-2000:]}")
    cpu, rss = r.stderr.strip().splitlines()[-1].split()
    doc = json.loads(out.read_text())
    found = {
        **doc["summary"],
        "drift": [d["field"] for d in doc["drift"]],
        "outliers": len(doc["outliers"]),
    }
    return seconds, float(cpu), int(rss), found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    base = base_report()
    size = len(json.dumps(base))
    with tempfile.TemporaryDirectory(prefix="gpucheck-fleet-bench-") as tmp:
        quarter, whole = Path(tmp, "quarter"), Path(tmp, "whole")
        quarter.mkdir()
        whole.mkdir()
        write_fleet(quarter, args.nodes // 4, base)
        write_fleet(whole, args.nodes, base)
        runs = [run_fleet(whole, args.nodes) for _ in range(args.runs)]
        _, _, rss_quarter, _ = run_fleet(quarter, args.nodes // 4)
    median = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rss_whole = max(r[2] for r in runs)
    summary = runs[0][3]
    print(f"gpucheck fleet over {args.nodes:,} node reports ({size / 1024:.0f} KiB each)")
    print(
        f"  wall time, median of {args.runs} fresh processes: {median:.2f} s (target < {TARGET_S:g} s)"
    )
    print(f"  runs: {', '.join(f'{r[0]:.2f}' for r in runs)} s; CPU time (median) {cpu:.2f} s")
    print(
        f"  peak RSS: {rss_quarter / 1024:.0f} MiB for {args.nodes // 4:,} reports, "
        f"{rss_whole / 1024:.0f} MiB for {args.nodes:,} (ratio {rss_whole / rss_quarter:.2f} "
        f"for 4x the reports)"
    )
    print(f"  found: {summary}")
    print(f"  machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    # On a machine shared with other work, wall time waits for a CPU; CPU time does not.
    print(
        f"  target met: {'yes' if median < TARGET_S else 'no'} (wall), {'yes' if cpu < TARGET_S else 'no'} (CPU)"
    )
    return 0


if __name__ == "__main__":
    _ = resource  # the child measures itself; imported here so a missing module fails early
    sys.exit(main())
