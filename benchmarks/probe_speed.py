"""`make bench`, part 1: wall time of gpucheck's static probe against torch's collect_env.

Both run as fresh processes, alternating, so that both see the same machine state; the figure
that matters is the ratio of medians, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "gpucheck probe --json": [sys.executable, "-m", "gpucheck", "probe", "--json"],
    "python -m torch.utils.collect_env": [sys.executable, "-m", "torch.utils.collect_env"],
}


def time_command(argv: list[str], timeout: float = 300.0) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # gpucheck exits 1 when it finds errors: still a full run
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    return elapsed


def probe_vs_collect_env(runs: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            times[name].append(time_command(argv))
    return {
        n: {"median_s": statistics.median(t), "min_s": min(t), "runs": len(t)}
        for n, t in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpucheck.benchmarks")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    results = probe_vs_collect_env(args.runs)
    ours = results["gpucheck probe --json"]["median_s"]
    theirs = results["python -m torch.utils.collect_env"]["median_s"]
    print(f"Static probe vs collect_env, median of {args.runs} runs each (fresh processes):")
    for name, r in results.items():
        print(f"  {name:38} {r['median_s']:7.3f} s  (min {r['min_s']:.3f} s)")
    print(f"  ratio collect_env / gpucheck probe: {theirs / ours:.1f}x")
    if args.json:
        from gpucheck.io import write_atomic

        write_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
