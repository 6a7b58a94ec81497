"""`make bench`, part 1: wall time of gpucheck's static probe against other diagnostics.

The reference is `python -m torch.utils.collect_env`; `env-doctor check` joins when an
`env-doctor` executable is found (on PATH, or `--env-doctor PATH`: it needs a venv of its
own). All run as fresh processes, alternating, so that all see the same machine state; the
figure that matters is the ratio of medians, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

OURS = "gpucheck probe --json"


def commands(env_doctor: str | None) -> dict[str, list[str]]:
    found = {
        OURS: [sys.executable, "-m", "gpucheck", "probe", "--json"],
        "python -m torch.utils.collect_env": [sys.executable, "-m", "torch.utils.collect_env"],
    }
    env_doctor = env_doctor or shutil.which("env-doctor")
    if env_doctor:
        found["env-doctor check"] = [env_doctor, "check"]
    return found


def time_command(argv: list[str], timeout: float = 300.0) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # exit 1 = problems found: still a full run
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    return elapsed


def measure(cmds: dict[str, list[str]], runs: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            times[name].append(time_command(argv))
    return {
        n: {"median_s": statistics.median(t), "min_s": min(t), "runs": len(t)}
        for n, t in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/probe_speed.py")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--env-doctor", metavar="PATH", help="the env-doctor executable to compare with"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    results = measure(commands(args.env_doctor), args.runs)
    ours = results[OURS]["median_s"]
    print(
        f"Static probe against other diagnostics, median of {args.runs} runs each (fresh processes):"
    )
    for name, r in results.items():
        ratio = "" if name == OURS else f"  ({r['median_s'] / ours:.1f}x gpucheck's time)"
        print(f"  {name:36} {r['median_s']:7.3f} s  (min {r['min_s']:.3f} s){ratio}")
    if args.json:
        from gpucheck.io import write_atomic

        write_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
