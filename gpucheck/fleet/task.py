"""One node's task under `gpucheck fleet --srun`: run `gpucheck check --json` and leave a file.

    python -m gpucheck.fleet.task --out DIR --timeout S -- [check args, $VARS expanded here]

Writes DIR/<node>.json (the report, atomically, by `check --json`) or, when the check ends
without a report, DIR/<node>.error (one line: why). Every task also records the step's node
list in DIR/.nodelist, so the fleet knows which nodes were meant to answer.
"""

from __future__ import annotations

import argparse
import os
import sys

from gpucheck.fleet._run import run
from gpucheck.fleet.slurm import node_name
from gpucheck.io import write_atomic

NODELIST_FILE = ".nodelist"
ERROR_SUFFIX = ".error"
GRACE_S = 30.0  # beyond the check's own --timeout, before the task kills it


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpucheck.fleet.task")
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("check_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    extra = args.check_args[1:] if args.check_args[:1] == ["--"] else args.check_args
    env = dict(os.environ)
    node = node_name(env)
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if nodelist:
        write_atomic(os.path.join(args.out, NODELIST_FILE), nodelist + "\n")
    report = os.path.join(args.out, f"{node}.json")
    argv_check = [
        sys.executable,
        "-m",
        "gpucheck",
        "check",
        "--quiet",
        "--json",
        report,
        "--timeout",
        f"{args.timeout:g}",
        *(os.path.expandvars(a) for a in extra),
    ]
    done = run(argv_check, timeout=args.timeout + GRACE_S, env=env)
    if done.returncode in (0, 1) and os.path.exists(report):
        return done.returncode
    if done.returncode is None:
        why = done.error or "did not finish"
    else:
        lines = [x for x in (done.stderr or "").strip().splitlines() if x.strip()]
        why = f"gpucheck check exited {done.returncode}" + (f": {lines[-1][:300]}" if lines else "")
    write_atomic(os.path.join(args.out, node + ERROR_SUFFIX), why + "\n")
    print(f"gpucheck fleet task on {node}: {why}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
