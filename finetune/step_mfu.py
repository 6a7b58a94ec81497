"""Where the fine-tuning step's MFU goes: one BERT token-classification training step (forward,
backward, fused AdamW) timed alone, over batch shapes, eager and compiled.

`python -m finetune` reports MFU for a whole run, which mixes the model's own speed with the
loop, the data and dynamic padding. This script takes the loop away: random token ids of a fixed
shape, the same model, dtype and optimizer, CUDA events around N steps after warm-up. Comparing
its figures with a run's says how much the loop costs and how much the shape does (short
sequences give small matmuls, which no GPU runs near its peak).

    python -m finetune.step_mfu --device cuda --json out.json
    python -m finetune.step_mfu --device cpu --hidden 64 --layers 2 --shapes 4x16  # smoke

MFU = model FLOPs (finetune.perf.sequence_flops) per second / the GPU's dense peak for the dtype.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from transformers import BertConfig, BertForTokenClassification

from finetune.perf import find_peak, matmul_weights, peak_tflops, sequence_flops
from gpucheck.io import write_atomic


def parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        shapes = [tuple(int(x) for x in s.split("x")) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"--shapes {text!r}: expected BxS[,BxS...], e.g. 32x128") from None
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise SystemExit(f"--shapes {text!r}: expected BxS[,BxS...], e.g. 32x128")
    return shapes


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def build(args, device: torch.device):
    cfg = BertConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        intermediate_size=4 * args.hidden,
        num_labels=9,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = BertForTokenClassification(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=device.type == "cuda")
    return model, opt, cfg


def time_steps(model, opt, batch, steps: int, warmup: int, dtype, device) -> float:
    """Seconds per training step (mean over `steps`, after `warmup`)."""

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0 / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def top_kernels(model, opt, batch, dtype, device, n: int = 12) -> list[dict]:
    """The kernels that take the step's GPU time (torch.profiler, 3 steps)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        time_steps(model, opt, batch, 3, 0, dtype, device)
    attr = "device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    # a record_function range (the optimizer's step) also shows as device time: not a kernel
    events = [
        e
        for e in prof.key_averages()
        if getattr(e, attr, 0) > 0 and not getattr(e, "is_user_annotation", False)
    ]
    if device.type == "cuda":  # kernels only: the operators' totals include their children
        cpu = torch.autograd.DeviceType.CPU
        events = [e for e in events if getattr(e, "device_type", None) != cpu]
    total = sum(getattr(e, attr) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    return [
        {"name": e.key[:90], "share": round(getattr(e, attr) / total, 4), "calls": e.count}
        for e in events[:n]
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--hidden", type=positive, default=768)
    ap.add_argument("--layers", type=positive, default=12)
    ap.add_argument("--vocab", type=positive, default=28996)  # bert-base-cased
    ap.add_argument("--shapes", default="32x32,32x64,32x128,64x128,128x128,256x128,32x384")
    ap.add_argument("--steps", type=positive, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", choices=("no", "yes", "both"), default="both")
    # each new shape recompiles (tens of seconds for BERT-base): compiled runs take few shapes
    ap.add_argument("--compile-shapes", default="32x128,128x128")
    ap.add_argument("--profile-shape", default="32x128", help="the shape whose kernels to list")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    shapes = parse_shapes(args.shapes)
    parse_shapes(args.compile_shapes)  # bad input fails before any work
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise SystemExit(f"--device {args.device!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = find_peak(name)
    peak_tf = peak_tflops(peak, args.dtype, False) if peak else None
    n_weights = matmul_weights(args.hidden, args.layers, 4 * args.hidden, 9)
    result = {
        "device": name or "cpu",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "model": {"hidden": args.hidden, "layers": args.layers, "vocab": args.vocab},
        "peak_tflops": peak_tf,
        "rows": [],
    }
    modes = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    for compiled in modes:
        model, opt, cfg = build(args, device)
        model.train()
        run = torch.compile(model) if compiled else model
        for b, s in parse_shapes(args.compile_shapes) if compiled else shapes:
            gen = torch.Generator().manual_seed(b * 1000 + s)
            batch = {
                "input_ids": torch.randint(1, cfg.vocab_size, (b, s), generator=gen).to(device),
                "attention_mask": torch.ones(b, s, dtype=torch.long, device=device),
                "labels": torch.randint(0, 9, (b, s), generator=gen).to(device),
            }
            t0 = time.perf_counter()
            try:
                sec = time_steps(run, opt, batch, args.steps, args.warmup, dtype, device)
            except torch.OutOfMemoryError:
                print(f"{b}x{s}: out of memory", flush=True)
                continue
            flops = b * sequence_flops(n_weights, args.layers, args.hidden, s)
            tflops = flops / sec / 1e12
            row = {
                "batch": b,
                "seq": s,
                "compiled": compiled,
                "step_ms": round(sec * 1000, 3),
                "samples_per_s": round(b / sec, 1),
                "tokens_per_s": round(b * s / sec),
                "tflops": round(tflops, 1),
                "mfu": round(tflops / peak_tf, 4) if peak_tf else None,
                "wall_s": round(time.perf_counter() - t0, 1),
            }
            result["rows"].append(row)
            mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
            print(
                f"{'compiled' if compiled else 'eager':8} {b:4}x{s:<4} {row['step_ms']:9.2f} ms "
                f"{row['samples_per_s']:9.1f} samples/s {tflops:7.1f} TFLOP/s MFU {mfu}",
                flush=True,
            )
            if not compiled and f"{b}x{s}" == args.profile_shape:
                result["top_kernels"] = top_kernels(run, opt, batch, dtype, device)
                for k in result["top_kernels"]:
                    print(f"    {k['share']:6.1%} x{k['calls']:<5} {k['name']}", flush=True)
            if args.json:  # after every row: a run cut short still leaves what it measured
                write_atomic(args.json, json.dumps(result, indent=1) + "\n")
        del model, opt, run
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
