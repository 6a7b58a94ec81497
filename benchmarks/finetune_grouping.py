"""Length grouping's effect on dev F1 and speed: our loop, one window after another, per seed.

For each seed the corpus, tokenizer and initial weights are prepared once and every window
trains from the same weights in the same process (run order rotated per seed), so the F1
differences are paired and the samples/s ratios are measured under the same load.
`python benchmarks/finetune_grouping.py --seeds 42,1,2,3,4 --windows 1,4,0`; any
`python -m finetune` workload flag (--model, --train-file, --device, ...) passes through.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from finetune.cli import _Parser, add_workload_arguments, workload_options

    p = _Parser(description=__doc__.splitlines()[0])
    add_workload_arguments(p)
    p.set_defaults(device="cpu")  # the CPU figures in docs/benchmarks.md; --device cuda for a GPU
    p.add_argument("--seeds", default="42,1,2,3,4")
    p.add_argument(
        "--windows", default="1,4,0", help="--bucket-batches values; 1 first is the base"
    )
    p.add_argument("--train-limit", type=int)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    from finetune import quiet

    quiet.configure(verbose=args.verbose)
    from finetune import train as tr

    seeds = [int(x) for x in args.seeds.split(",")]
    windows = args.windows.split(",")
    rows = []
    for k, seed in enumerate(seeds):
        opts = workload_options(
            args,
            seed=seed,
            train_limit=args.train_limit,
            eval_each_epoch=False,
            progress=False,
        )
        prep = tr.prepare(opts)
        order = windows[k % len(windows) :] + windows[: k % len(windows)]
        for w in order:
            prep.opts.bucket_batches = int(w)
            model = tr.build_model(prep)
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            doc = tr.train_and_evaluate(prep, model)
            wall = time.perf_counter() - t0 - doc["eval"]["eval_s"]
            row = {
                "seed": seed,
                "window_arg": w,
                "window": doc["config"]["length_bucketing_window"],
                "f1": doc["eval"]["f1"],
                "padding": doc["train"]["padding_fraction"],
                "samples_per_s": doc["train"]["samples"] / wall,
                "load1": load,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("window  mean F1  std     delta vs W=1 (paired mean, min, max)  padding  speed vs W=1")
    base = {r["seed"]: r for r in rows if r["window_arg"] == windows[0]}
    for w in windows:
        rs = [r for r in rows if r["window_arg"] == w]
        f1 = [r["f1"] for r in rs]
        d = [r["f1"] - base[r["seed"]]["f1"] for r in rs]
        sp = [r["samples_per_s"] / base[r["seed"]]["samples_per_s"] for r in rs]
        print(
            f"{w:>6}  {statistics.mean(f1):.4f}  {statistics.stdev(f1) if len(f1) > 1 else 0:.4f}"
            f"  {statistics.mean(d):+.4f} ({min(d):+.4f}, {max(d):+.4f})"
            f"      {statistics.mean(r['padding'] for r in rs):.3f}    "
            f"{statistics.mean(sp):.2f}x"
        )
    if args.json:
        from gpucheck.io import write_atomic

        write_atomic(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
