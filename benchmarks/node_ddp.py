"""`make bench`: DDP on 2 CPU ranks vs 1 process (scaling efficiency), and the time gpucheck
takes to report a missing, hung or crashed rank (gpucheck/node/launch.py, real torchrun, gloo).

Scaling efficiency = global samples/s of the 2-rank run / (2 x samples/s of 1 process), the
same preset, steps per rank and threads per rank. Reporting time = the launch's wall time; for
a rank that never joins or hangs it is bounded by --timeout (the figure is the overhead past it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gpucheck import proc  # noqa: E402
from gpucheck.node.launch import LaunchSpec, launch  # noqa: E402
from gpucheck.node.outcome import launch_findings  # noqa: E402

WORKER = os.path.join(ROOT, "tests", "fixtures", "node", "worker.py")


def finetune_args(path: str, steps: int) -> list[str]:
    return ["--preset", "tiny", "--max-steps", str(steps), "--epochs", "1", "--device", "cpu",
            "--json", path, "--no-progress", "--quiet"]  # fmt: skip


def single(steps: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "one.json")
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        argv = [sys.executable, "-m", "finetune", *finetune_args(path, steps)]
        done = proc.run(argv, timeout=timeout, env=env, cwd=ROOT)
        if done.returncode not in (0, 1):
            raise SystemExit(f"single run failed: {done.error or done.stderr[-500:]}")
        with open(path) as fh:
            return json.load(fh)


def ddp(steps: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ddp.json")
        spec = LaunchSpec(
            nproc_per_node=2, args=tuple(finetune_args(path, steps)), timeout=timeout,
            extra_env={"PYTHONPATH": ROOT},
        )  # fmt: skip
        o = launch(spec)
        if not os.path.exists(path):  # rank 0 exits 1 on a failed gate, after writing it
            raise SystemExit(f"DDP run failed: {o.status} {o.stderr_tail[-800:]}")
        with open(path) as fh:
            return json.load(fh)


def fault(kind: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = LaunchSpec(
            nproc_per_node=2, entry=(WORKER,), args=(os.path.join(tmp, "x.json"),),
            timeout=timeout, extra_env={"NODE_TEST_FAULT": f"{kind}:1" if kind != "none" else "", "PYTHONPATH": ROOT},
        )  # fmt: skip
        t0 = time.monotonic()
        o = launch(spec)
        took = time.monotonic() - t0
    f = launch_findings(o)
    return {
        "fault": kind,
        "timeout_s": timeout,
        "reported_in_s": round(took, 2),
        "past_timeout_s": round(took - timeout, 2)
        if o.status in ("never-joined", "hung")
        else None,
        "finding": f[0].id if f else None,
        "title": f[0].title if f else None,
        "left_running_killed": o.leftovers,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="training steps per rank")
    ap.add_argument("--fault-timeout", type=float, default=15.0)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--faults-only", action="store_true", help="skip the DDP scaling runs")
    args = ap.parse_args()
    if args.faults_only:
        faults = [fault(k, args.fault_timeout) for k in ("none", "crash", "nojoin", "hang")]
        print(json.dumps(faults, indent=1))
        return 0
    one = single(args.steps, 600)
    two = ddp(args.steps, 600)
    sps1 = one["train"]["samples_per_s"]
    dist = two["distributed"]
    sps2 = dist["samples_per_s"]
    scaling = {
        "cpu_cores": os.cpu_count(),
        "steps_per_rank": args.steps,
        "one_process_samples_per_s": round(sps1, 1),
        "two_ranks_samples_per_s": round(sps2, 1),
        "per_rank": [round(r["samples_per_s"], 1) for r in dist["ranks"]],
        "scaling_efficiency": round(sps2 / (2 * sps1), 3),
        "allreduce_busbw_gbps": [r["busbw_gbps"] for r in dist["allreduce"]["sizes"]],
        "f1_one": round(one["eval"]["f1"], 4),
        "f1_two": round(two["eval"]["f1"], 4),
    }
    faults = [fault(k, args.fault_timeout) for k in ("none", "crash", "nojoin", "hang")]
    print(
        f"DDP on 2 CPU ranks vs 1 process ({scaling['cpu_cores']} cores, tiny, {args.steps} steps/rank)"
    )
    print(
        f"  1 process : {scaling['one_process_samples_per_s']:,.1f} samples/s, F1 {scaling['f1_one']}"
    )
    print(
        f"  2 ranks   : {scaling['two_ranks_samples_per_s']:,.1f} samples/s (per rank {scaling['per_rank']}), F1 {scaling['f1_two']}"
    )
    print(f"  scaling efficiency: {scaling['scaling_efficiency']:.2f}")
    print(
        f"Time to report a faulty rank (timeout {args.fault_timeout:g} s; a healthy run of the same"
    )
    print(
        f"2-rank worker takes {faults[0]['reported_in_s']:.1f} s here, mostly starting torch twice)"
    )
    for f in faults[1:]:
        extra = (
            f", {f['past_timeout_s']:+.1f} s past the timeout"
            if f["past_timeout_s"] is not None
            else ""
        )
        print(
            f"  {f['fault']:7s}: {f['finding']} in {f['reported_in_s']:.1f} s{extra}; {f['title']}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"scaling": scaling, "faults": faults}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
