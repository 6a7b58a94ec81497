"""The fine-tuning loop: train a prepared run with our loop, evaluate it, report it.

The set-up is in `finetune.prep` (options, data, tokenizer, model), batching in
`finetune.batching`, evaluation in `finetune.evaluate`, rates and MFU in `finetune.perf`, the
verdict in `finetune.gate` and the JSON document in `finetune.report`.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass

import torch

from finetune import distributed, perf
from finetune.amp import autocast, grad_scaler
from finetune.batching import Batcher, group_window, length_buckets, prefetch
from finetune.config import Preset
from finetune.evaluate import EvalResult, evaluate, predict
from finetune.gate import Gate, LossSummary, choose_rule
from finetune.prep import (
    InputError,
    Options,
    OutOfMemory,
    Prepared,
    build_model,
    prepare,
    resolve_device,
    resolve_dtype,
)
from finetune.report import SCHEMA_VERSION, ModelInfo, RunConfig, TrainTotals, document

__all__ = [
    "SCHEMA_VERSION",
    "EvalResult",
    "InputError",
    "Options",
    "OutOfMemory",
    "Prepared",
    "build_model",
    "evaluate",
    "predict",
    "prepare",
    "resolve_device",
    "resolve_dtype",
    "save",
    "train_and_evaluate",
]


@dataclass(frozen=True)
class Plan:
    """How many steps, epochs and warm-up steps a run takes."""

    steps_per_epoch: int
    total_steps: int
    epochs: int
    warmup_steps: int

    @classmethod
    def of(cls, n_train: int, preset: Preset, opts: Options) -> Plan:
        per_epoch = math.ceil(n_train / preset.batch_size)
        total = preset.epochs * per_epoch
        if opts.max_steps is not None:
            total = min(total, opts.max_steps) if opts.epochs is not None else opts.max_steps
        # as the Trainer's warmup ratio: ceil(ratio x total steps)
        return cls(
            per_epoch, total, math.ceil(total / per_epoch), math.ceil(preset.warmup_ratio * total)
        )


def make_optimizer(model, preset: Preset, fused: bool = True):
    """AdamW with no weight decay on biases and LayerNorm weights (as the Trainer groups them)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            plain = p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias")
            (no_decay if plain else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": preset.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if fused:
        try:
            return torch.optim.AdamW(groups, lr=preset.lr, fused=True), "AdamW(fused)"
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(groups, lr=preset.lr), "AdamW(foreach)"


def wrap_model(model, opts: Options):
    """The model the training steps call: the one place where it is wrapped (torch.compile).
    Evaluation calls the plain model (same weights): under no_grad the compiled one would
    compile again (grad mode is one of its guards), and a DDP wrapper has nothing to do there."""
    if not opts.compile:
        return model
    # A first batch as long as it is wide (32 x 32) ties the two sizes together ("duck sizing")
    # and the next batch compiles again (seen on the H200: 13-15 s each); keep them apart.
    try:
        import torch.fx.experimental._config as fx_config

        fx_config.use_duck_shape = False
    except (ImportError, AttributeError):  # an older torch without the setting
        pass
    return torch.compile(model, dynamic=True)


def grouping_window(prep: Prepared) -> int:
    """Length grouping window in batches: --bucket-batches (0: the Trainer's mega-batch)."""
    if prep.opts.bucket_batches is None:
        return 1
    if prep.opts.bucket_batches == 0:
        return group_window(len(prep.train_enc), prep.preset.batch_size)
    return prep.opts.bucket_batches


def train_batches(batcher: Batcher, prep: Prepared, epoch: int, done: int, total: int):
    """The batches (lists of sentence indices) of one epoch, cut at the step budget."""
    rng = random.Random(f"{prep.preset.seed}-{epoch}")
    window = grouping_window(prep)
    batches = length_buckets(batcher.lengths, prep.preset.batch_size, rng, window)
    batches = distributed.shard(batches, distributed.active())  # this rank's share (DDP)
    return batches[: max(0, total - done)]


class LossLog:
    """Per-step losses, kept on the device and read back every few steps (each read syncs)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.pending: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss.detach())

    def flush(self) -> bool:
        """Read the pending losses; False when one of them is NaN or infinite."""
        if not self.pending:
            return True
        values = torch.stack(self.pending).float().cpu().tolist()
        self.pending.clear()
        self.values.extend(values)
        return all(math.isfinite(v) for v in values)


def _is_oom(exc: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(
        torch.cuda, "OutOfMemoryError", ()
    )
    return isinstance(exc, oom_type) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc)
    )


def train_and_evaluate(prep: Prepared, model=None) -> dict:
    """Train with our loop, evaluate, and return the result document (docs/finetune.md)."""
    from transformers import get_linear_schedule_with_warmup

    opts, preset, device, dtype = prep.opts, prep.preset, prep.device, prep.dtype
    cuda = device.type == "cuda"
    dist = distributed.active()  # a single process unless a launcher started this one
    is_main = dist.is_main  # the process that evaluates and writes the result
    t_setup = time.perf_counter()

    # determinism and device settings
    random.seed(preset.seed)
    torch.manual_seed(preset.seed)
    if cuda:
        torch.cuda.set_device(device)
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)

    # model, optimizer, schedule, gradient scaler (a pass-through unless fp16)
    model = model if model is not None else build_model(prep)
    model.to(device)
    model.train()
    run_model = wrap_model(distributed.wrap(model, dist), opts)
    # the grad scaler on CPU is only known to work with the plain (foreach) kernel
    optimizer, opt_name = make_optimizer(model, preset, fused=cuda or dtype != "fp16")
    scaler = grad_scaler(device.type, enabled=dtype == "fp16")
    plan = Plan.of(distributed.per_rank(len(prep.train_enc), dist), preset, opts)
    scheduler = get_linear_schedule_with_warmup(optimizer, plan.warmup_steps, plan.total_steps)

    # batches: dynamic padding (to a multiple of 8 where tensor cores or compile like it)
    multiple = 8 if cuda or opts.compile else 1
    batcher = Batcher(prep.train_enc, prep.tokenizer.pad_token_id, multiple, pin=cuda)
    cfg = model.config
    n_matmul = perf.matmul_weights(
        cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, len(prep.labels)
    )
    layers, hidden = cfg.num_hidden_layers, cfg.hidden_size
    timer = perf.StepTimer(cuda)
    rule = choose_rule(
        opts.f1_gate, prep.builtin_data, bool(opts.model), preset.name, preset.f1_gate
    )
    setup_s = time.perf_counter() - t_setup

    steps: list[perf.Step] = []
    losses = LossLog()
    history: list[dict] = []
    nonfinite = False
    train_s = 0.0
    time_to_gate = None
    final: EvalResult | None = None
    prog = _progress(
        opts.progress if is_main else False, plan.total_steps, f"fine-tuning {preset.name}"
    )
    try:
        for epoch in range(plan.epochs):
            batches = train_batches(batcher, prep, epoch, len(steps), plan.total_steps)
            t_epoch = time.perf_counter()
            for idx, cpu_batch in prefetch(batcher, batches, background=cuda):
                timer.step()
                batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
                # forward
                with autocast(device, dtype):
                    loss = run_model(**batch).loss
                # backward, clip, step (the scaler scales and unscales only for fp16)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), preset.max_grad_norm)
                scale = scaler.get_scale() if scaler.is_enabled() else None  # fp16 only: a sync
                scaler.step(optimizer)
                scaler.update()
                # as the Trainer: a step the scaler skipped (inf gradients, a lowered scale)
                # does not advance the schedule
                if scale is None or scaler.get_scale() >= scale:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                # bookkeeping: no host sync except every log_every steps
                losses.add(loss)
                lens = [batcher.lengths[i] for i in idx]
                width = cpu_batch["input_ids"].shape[1]
                steps.append(perf.Step.of(lens, width, n_matmul, layers, hidden))
                if len(steps) % opts.log_every == 0 or len(steps) == plan.total_steps:
                    if not losses.flush():
                        nonfinite = True
                        break
                    if prog is not None:
                        done = sum(s.samples for s in steps)
                        rate = done / max(1e-9, train_s + time.perf_counter() - t_epoch)
                        info = f"loss {losses.values[-1]:.4f}  {rate:,.0f} samples/s"
                        prog.update(prog.task_ids[0], completed=len(steps), info=info)
            # end of epoch: close the timing, check the loss, evaluate
            timer.close_chain()
            if cuda:
                torch.cuda.synchronize(device)
            train_s += time.perf_counter() - t_epoch
            if nonfinite or not losses.flush():
                nonfinite = True
                break
            if is_main and (epoch == plan.epochs - 1 or opts.eval_each_epoch):
                final = evaluate(model, prep)  # the plain model: see wrap_model
                history.append(
                    {
                        "epoch": epoch + 1,
                        "step": len(steps),
                        "f1": final.f1,
                        "train_s": round(train_s, 4),
                    }
                )
                gate_f1 = rule.f1_threshold
                if time_to_gate is None and gate_f1 is not None and final.f1 >= gate_f1:
                    time_to_gate = train_s
    except Exception as exc:
        if _is_oom(exc):
            raise OutOfMemory(str(exc).splitlines()[0] if str(exc) else "out of memory") from None
        raise
    finally:
        if prog is not None:
            prog.stop()

    # figures, verdict, output
    durations = timer.durations()
    n_samples = sum(s.samples for s in steps)
    mine = {"samples": n_samples, "steps": len(steps), "wall_s": train_s}
    mine["samples_per_s"] = n_samples / train_s if train_s > 0 else None
    dist_block = distributed.finish(dist, mine)  # every rank: all_reduce, gather to rank 0
    if not is_main:
        return {}
    if final is None:  # stopped early (non-finite loss): evaluate what we have
        final = evaluate(model, prep)
    rates = perf.Throughput.of(steps, durations, perf.warmup_steps_excluded(plan.total_steps))
    gpu_name = torch.cuda.get_device_name(device) if cuda else None
    util = perf.Utilization.of(gpu_name, dtype, tf32=cuda, rates=rates)
    if cuda:
        peak_mem, mem_source = (
            torch.cuda.max_memory_allocated(device),
            "torch.cuda.max_memory_allocated",
        )
    else:
        peak_mem, mem_source = perf.process_peak_rss(), "process peak RSS (ru_maxrss)"
    loss = LossSummary.of(losses.values, nonfinite)
    gate = Gate.judge(loss, final.f1, rule)
    if opts.output_dir:
        save(model, prep.tokenizer, opts.output_dir)

    totals = TrainTotals(
        steps=len(steps),
        epochs_completed=len(history)
        if opts.eval_each_epoch
        else len(steps) / plan.steps_per_epoch,
        samples=sum(s.samples for s in steps),
        real_tokens=sum(s.real_tokens for s in steps),
        padded_tokens=sum(s.padded_tokens for s in steps),
        model_flops=sum(s.model_flops for s in steps),
        wall_s=train_s,
        setup_s=setup_s,
        tokenizer_s=prep.tokenizer_s,
        time_to_gate_s=time_to_gate,
        peak_memory_bytes=peak_mem,
        peak_memory_source=mem_source,
    )
    from finetune.report import train_section

    doc = document(
        device=device,
        dtype=dtype,
        model=ModelInfo(
            source=opts.model or f"preset:{preset.name}",
            architecture=type(model).__name__,
            parameters=sum(p.numel() for p in model.parameters()),
            matmul_weights=n_matmul,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_hidden_layers,
            num_heads=cfg.num_attention_heads,
            intermediate_size=cfg.intermediate_size,
            vocab_size=cfg.vocab_size,
            num_labels=len(prep.labels),
            attn_implementation=getattr(cfg, "_attn_implementation", None),
            compiled=opts.compile,
            load_note=getattr(model, "load_note", None),
        ),
        config=RunConfig(
            preset=preset.name,
            epochs=preset.epochs,
            max_steps=opts.max_steps,
            total_steps=plan.total_steps,
            batch_size=preset.batch_size,
            eval_batch_size=preset.eval_batch_size,
            max_length=preset.max_length,
            lr=preset.lr,
            warmup_ratio=preset.warmup_ratio,
            warmup_steps=plan.warmup_steps,
            weight_decay=preset.weight_decay,
            max_grad_norm=preset.max_grad_norm,
            seed=preset.seed,
            optimizer=opt_name,
            schedule="linear warm-up and decay (transformers.get_linear_schedule_with_warmup)",
            grad_scaler=scaler.is_enabled(),
            tf32=cuda,
            length_bucketing_window=grouping_window(prep),
            pad_to_multiple_of=multiple,
            f1_gate=rule.f1_threshold,
        ),
        data=prep.data_info,
        train=train_section(totals, rates, util, loss),
        evaluation=final,
        history=history,
        gate=gate,
        output_dir=opts.output_dir,
    )
    if dist_block is not None:
        doc["distributed"] = dist_block
    return doc


def _progress(enabled: bool | None, total: int, label: str):
    """A rich progress bar on stderr (when it is a terminal, unless told otherwise)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=True,
    )
    prog.start()
    prog.add_task(label, total=total, info="")
    return prog


def save(model, tokenizer, output_dir: str) -> None:
    """save_pretrained the model and tokenizer so that `--model output_dir` reloads them."""
    os.makedirs(output_dir, exist_ok=True)
    model = getattr(model, "_orig_mod", model)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
