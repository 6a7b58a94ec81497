"""The fine-tuning loop: data -> tokenizer -> BertForTokenClassification -> train -> evaluate.

`prepare()` builds everything a run needs (also used by `finetune.compare` so that the
reference Trainer sees the same model, data and tokenizer); `train_and_evaluate()` runs our
loop and returns the JSON-ready result.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import queue
import random
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from finetune import perf
from finetune.align import IGNORE, Encoded, encode
from finetune.config import LABELS, Preset, get_preset
from finetune.data import Sentence, generate_corpus
from finetune.metrics import score, token_accuracy

SCHEMA_VERSION = 1


class InputError(ValueError):
    """Bad user input (flag, file, model directory): exit 2 with one line."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory."""


@dataclass
class Options:
    preset: str = "tiny"
    model: str | None = None
    train_file: str | None = None
    eval_file: str | None = None
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    max_length: int | None = None
    lr: float | None = None
    seed: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    output_dir: str | None = None
    eval_each_epoch: bool = True  # evaluate after every epoch (time to gate); else only at the end
    progress: bool | None = None  # None: a progress bar when stderr is a terminal
    log_every: int = 10  # steps between host reads of the loss (each one is a device sync)
    # Length bucketing window, in batches. 1 (random batches, as the reference Trainer) is the
    # default: windows of 8 trained ~10% faster on CPU but lost ~0.03 dev F1 on the built-in
    # corpus, where sentences of one template have one length (docs/benchmarks.md).
    bucket_batches: int = 1


@dataclass
class Prepared:
    opts: Options
    preset: Preset  # with the command-line overrides applied
    device: torch.device
    dtype: str  # "fp32" | "bf16" | "fp16"
    labels: list[str]
    train_sentences: list[Sentence]
    eval_sentences: list[Sentence]
    tokenizer: object
    train_enc: Encoded
    eval_enc: Encoded
    data_info: dict = field(default_factory=dict)
    tokenizer_s: float = 0.0

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


# --- set-up ---------------------------------------------------------------------------------


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not m:
        raise InputError(f"--device {spec!r}: expected cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise InputError(
            f"--device {spec}: CUDA is not available to this torch ({torch.__version__})"
        )
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise InputError(
            f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible"
        )
    return torch.device("cuda", index)


def resolve_dtype(spec: str, device: torch.device) -> str:
    if spec not in ("auto", "fp32", "bf16", "fp16"):
        raise InputError(f"--dtype {spec!r}: expected auto, fp32, bf16 or fp16")
    if device.type == "cuda":
        bf16_ok = (
            torch.cuda.get_device_capability(device)[0] >= 8 and torch.cuda.is_bf16_supported()
        )
        if spec == "auto":
            return "bf16" if bf16_ok else "fp16"
        if spec == "bf16" and not bf16_ok:
            raise InputError(
                f"--dtype bf16: {torch.cuda.get_device_name(device)} has no bf16 "
                "support; use fp16 or fp32"
            )
        return spec
    return "fp32" if spec == "auto" else spec


def _labels_for(sentences: Sequence[Sentence]) -> list[str]:
    kinds = sorted({t[2:] for s in sentences for t in s.tags if t != "O"})
    return ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]


def _load_data(opts: Options, preset: Preset) -> tuple[list[Sentence], list[Sentence], dict]:
    from finetune.conll import ConllError, load_hf_dataset, read_conll

    if (opts.train_file is None) != (opts.eval_file is None):
        raise InputError("give --train-file and --eval-file together")
    if opts.train_file is None:
        train, dev = generate_corpus(preset.train_sentences, preset.eval_sentences, preset.seed)
        return train, dev, {"source": "synthetic", "seed": preset.seed}
    info: dict = {
        "source": "conll",
        "train_file": opts.train_file,
        "eval_file": opts.eval_file,
        "iob1_converted": 0,
    }
    out = []
    for path, split in ((opts.train_file, "train"), (opts.eval_file, "validation")):
        try:
            if path.startswith("hf:"):
                out.append(load_hf_dataset(path, split))
                info["source"] = "hf-datasets"
            else:
                cf = read_conll(path)
                out.append(cf.sentences)
                info["iob1_converted"] += cf.converted_iob1
        except ConllError as exc:
            raise InputError(str(exc)) from None
    return out[0], out[1], info


def prepare(opts: Options) -> Prepared:
    try:
        preset = get_preset(opts.preset)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    changes = {
        k: getattr(opts, k)
        for k in ("epochs", "batch_size", "max_length", "lr", "seed")
        if getattr(opts, k) is not None
    }
    for k in ("epochs", "batch_size", "max_length"):
        if k in changes and changes[k] < 1:
            raise InputError(f"--{k.replace('_', '-')} must be at least 1")
    if "max_length" in changes and changes["max_length"] < 4:
        raise InputError("--max-length must be at least 4 (two special tokens and a word)")
    if "lr" in changes and not (math.isfinite(changes["lr"]) and changes["lr"] > 0):
        raise InputError("--lr must be a positive number")
    if opts.max_steps is not None and opts.max_steps < 1:
        raise InputError("--max-steps must be at least 1")
    preset = preset.replace(**changes)
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)

    train, dev, info = _load_data(opts, preset)
    t0 = time.perf_counter()
    if opts.model:
        from finetune.tokenizer import load_tokenizer

        _check_model_dir(opts.model)
        try:
            tokenizer = load_tokenizer(opts.model)
        except InputError:
            raise
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--model {opts.model}: cannot load its tokenizer: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        limit = _model_max_positions(opts.model)
        if limit is not None and preset.max_length > limit:
            raise InputError(
                f"--max-length {preset.max_length} is longer than the model's {limit} positions"
            )
    else:
        from finetune.tokenizer import train_wordpiece

        if preset.max_length > preset.max_position_embeddings:
            preset = preset.replace(max_position_embeddings=max(512, preset.max_length))
        tokenizer = train_wordpiece(train, preset.vocab_size, preset.max_position_embeddings)
    labels = list(LABELS) if info["source"] == "synthetic" else _labels_for(train + dev)
    if opts.model:
        labels = _checkpoint_label_order(opts.model, labels)
    label2id = {label: i for i, label in enumerate(labels)}
    train_enc = encode(tokenizer, train, label2id, preset.max_length)
    eval_enc = encode(tokenizer, dev, label2id, preset.max_length)
    tokenizer_s = time.perf_counter() - t0
    info.update(
        {
            "train_sentences": len(train),
            "eval_sentences": len(dev),
            "train_words": sum(len(s) for s in train),
            "eval_words": sum(len(s) for s in dev),
            "labels": labels,
            "truncated_words": {
                "train": train_enc.truncated_words,
                "eval": eval_enc.truncated_words,
            },
            "truncated_sentences": {
                "train": train_enc.truncated_sentences,
                "eval": eval_enc.truncated_sentences,
            },
            "empty_words": {"train": train_enc.empty_words, "eval": eval_enc.empty_words},
            "mean_tokens_per_sentence": round(sum(train_enc.lengths) / max(1, len(train_enc)), 2),
            "max_tokens_per_sentence": max(train_enc.lengths, default=0),
        }
    )
    return Prepared(
        opts,
        preset,
        device,
        dtype,
        labels,
        train,
        dev,
        tokenizer,
        train_enc,
        eval_enc,
        info,
        tokenizer_s,
    )


def _check_model_dir(model: str) -> None:
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise InputError(f"--model {model}: no config.json in that folder")
        return
    if os.path.exists(model):
        raise InputError(f"--model {model}: not a folder")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model):
        raise InputError(f"--model {model}: no such folder")
    # a hub id: only from the local cache (the benchmark never downloads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _model_max_positions(model: str) -> int | None:
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"--model {model}: cannot read its config: {str(exc).splitlines()[0]}"
        ) from None
    return getattr(cfg, "max_position_embeddings", None)


def _checkpoint_label_order(model: str, labels: list[str]) -> list[str]:
    """Keep the checkpoint's label order when it already has exactly our label set."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model)
    theirs = [cfg.id2label[i] for i in sorted(cfg.id2label)] if cfg.id2label else []
    return theirs if sorted(theirs) == sorted(labels) else labels


def build_model(prep: Prepared):
    """A seeded BertForTokenClassification (random init from the preset, or the checkpoint)."""
    from transformers import AutoModelForTokenClassification, BertConfig, BertForTokenClassification

    torch.manual_seed(prep.preset.seed)
    id2label = dict(enumerate(prep.labels))
    if prep.opts.model:
        kwargs = dict(
            num_labels=len(prep.labels),
            id2label=id2label,
            label2id=prep.label2id,
            ignore_mismatched_sizes=True,
        )
        try:
            try:
                model = AutoModelForTokenClassification.from_pretrained(
                    prep.opts.model, attn_implementation="sdpa", **kwargs
                )
            except ValueError as exc:
                if "sdpa" not in str(exc).lower():
                    raise
                model = AutoModelForTokenClassification.from_pretrained(prep.opts.model, **kwargs)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--model {prep.opts.model}: cannot load the model: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        return model
    p = prep.preset
    config = BertConfig(
        vocab_size=len(prep.tokenizer),
        hidden_size=p.hidden_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        intermediate_size=p.intermediate_size,
        max_position_embeddings=p.max_position_embeddings,
        hidden_dropout_prob=p.dropout,
        attention_probs_dropout_prob=p.dropout,
        pad_token_id=prep.tokenizer.pad_token_id,
        num_labels=len(prep.labels),
        id2label=id2label,
        label2id=prep.label2id,
        attn_implementation="sdpa",
    )
    return BertForTokenClassification(config)


# --- batching -------------------------------------------------------------------------------


def length_buckets(
    lengths: Sequence[int], batch_size: int, rng: random.Random, bucket_batches: int
) -> list[list[int]]:
    """Shuffled batches of similar-length sequences: shuffle, sort within windows of
    `bucket_batches` batches, cut into batches, shuffle the batch order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket_batches
    batches: list[list[int]] = []
    for lo in range(0, len(order), window):
        chunk = sorted(order[lo : lo + window], key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


class Batcher:
    """Pads batches of pre-tokenised sequences (dynamic padding) into CPU tensors."""

    def __init__(self, enc: Encoded, pad_id: int, multiple: int = 1, pin: bool = False) -> None:
        self.ids = [torch.tensor(x, dtype=torch.long) for x in enc.input_ids]
        self.labels = [torch.tensor(x, dtype=torch.long) for x in enc.labels]
        self.lengths = enc.lengths
        self.pad_id = pad_id
        self.multiple = multiple
        self.pin = pin

    def collate(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        from torch.nn.utils.rnn import pad_sequence

        ids = pad_sequence([self.ids[i] for i in idx], batch_first=True, padding_value=self.pad_id)
        labels = pad_sequence([self.labels[i] for i in idx], batch_first=True, padding_value=IGNORE)
        width = ids.shape[1]
        if self.multiple > 1 and width % self.multiple:
            extra = self.multiple - width % self.multiple
            ids = torch.nn.functional.pad(ids, (0, extra), value=self.pad_id)
            labels = torch.nn.functional.pad(labels, (0, extra), value=IGNORE)
        lens = torch.tensor([self.lengths[i] for i in idx])
        mask = (torch.arange(ids.shape[1])[None, :] < lens[:, None]).long()
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.pin:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch


def prefetch(batcher: Batcher, batches: Sequence[Sequence[int]], background: bool) -> Iterator:
    """Collated batches, built by a background thread (CUDA: overlaps the GPU) or inline."""
    if not background:
        for idx in batches:
            yield idx, batcher.collate(idx)
        return
    q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def work() -> None:
        try:
            for idx in batches:
                if stop.is_set():
                    return
                q.put((idx, batcher.collate(idx)))
        except BaseException as exc:  # hand it to the consumer
            q.put(exc)
            return
        q.put(None)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# --- evaluation -----------------------------------------------------------------------------


def predict(
    model,
    enc: Encoded,
    labels: Sequence[str],
    device: torch.device,
    dtype: str,
    batch_size: int,
    pad_id: int,
) -> list[list[str]]:
    """Word-level predicted tags (first sub-token of each word; lost words are "O")."""
    batcher = Batcher(enc, pad_id)
    order = sorted(range(len(enc)), key=lambda i: enc.lengths[i])
    out: list[list[str]] = [[] for _ in range(len(enc))]
    was_training = model.training
    model.eval()
    with torch.inference_mode(), _autocast(device, dtype):
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            batch = batcher.collate(idx)
            logits = model(
                input_ids=batch["input_ids"].to(device, non_blocking=True),
                attention_mask=batch["attention_mask"].to(device, non_blocking=True),
            ).logits
            best = logits.argmax(-1).cpu().tolist()
            for r, i in enumerate(idx):
                row = best[r]
                out[i] = [labels[row[p]] if p >= 0 else "O" for p in enc.first_token[i]]
    model.train(was_training)
    return out


def evaluate(model, prep: Prepared, batch_size: int | None = None) -> dict:
    t0 = time.perf_counter()
    preds = predict(
        model,
        prep.eval_enc,
        prep.labels,
        prep.device,
        prep.dtype,
        batch_size or prep.preset.eval_batch_size,
        prep.tokenizer.pad_token_id,
    )
    gold = [list(s.tags) for s in prep.eval_sentences]
    main = score(gold, preds)
    strict = score(gold, preds, strict=True)
    return {
        "f1": main["f1"],
        "precision": main["precision"],
        "recall": main["recall"],
        "per_type": main["per_type"],
        "entities": main["support"],
        "predicted_entities": main["predicted"],
        "correct_entities": main["correct"],
        "strict_iob2": {k: strict[k] for k in ("f1", "precision", "recall")},
        "token_accuracy": token_accuracy(gold, preds),
        "sentences": len(gold),
        "eval_s": time.perf_counter() - t0,
        "_predictions": preds,
    }


# --- training -------------------------------------------------------------------------------


def _autocast(device: torch.device, dtype: str):
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def _is_oom(exc: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(
        torch.cuda, "OutOfMemoryError", ()
    )
    return isinstance(exc, oom_type) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc)
    )


def _optimizer(model, preset: Preset, fused: bool = True):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(
            p
        )
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


def _linear_schedule(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class _Timer:
    """Per-step wall times; CUDA events on a GPU (no per-step host sync), perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list = []  # per chain: list of marks; a chain is one epoch
        self.chains: list[list] = []

    def _mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def step(self) -> None:
        self.marks.append(self._mark())

    def close_chain(self) -> None:
        if self.marks:
            self.marks.append(self._mark())
            self.chains.append(self.marks)
            self.marks = []

    def durations(self) -> list[float]:
        self.close_chain()
        if self.cuda:
            torch.cuda.synchronize()
        out: list[float] = []
        for chain in self.chains:
            for a, b in zip(chain, chain[1:], strict=False):
                out.append(a.elapsed_time(b) / 1000.0 if self.cuda else b - a)
        return out


def _progress(enabled: bool | None, total: int, label: str):
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


def train_and_evaluate(prep: Prepared, model=None) -> dict:
    """Train with our loop, evaluate, and return the result dict (see docs/finetune.md)."""
    opts, preset, device, dtype = prep.opts, prep.preset, prep.device, prep.dtype
    t_setup = time.perf_counter()
    random.seed(preset.seed)
    torch.manual_seed(preset.seed)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    model = model if model is not None else build_model(prep)
    model.to(device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    n_matmul = perf.matmul_weights(
        cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, len(prep.labels)
    )
    run_model = model
    if opts.compile:
        run_model = torch.compile(model, dynamic=True)
    # the grad scaler on CPU is only known to work with the plain (foreach) kernel
    optimizer, opt_name = _optimizer(model, preset, fused=device.type == "cuda" or dtype != "fp16")
    scaler = torch.amp.GradScaler(device.type) if dtype == "fp16" else None

    batch_size = preset.batch_size
    steps_per_epoch = math.ceil(len(prep.train_enc) / batch_size)
    total_steps = preset.epochs * steps_per_epoch
    if opts.max_steps is not None:
        total_steps = (
            min(total_steps, opts.max_steps) if opts.epochs is not None else opts.max_steps
        )
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = int(preset.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(warmup, total_steps))
    multiple = 8 if device.type == "cuda" or opts.compile else 1
    batcher = Batcher(
        prep.train_enc, prep.tokenizer.pad_token_id, multiple, pin=device.type == "cuda"
    )
    n_warm = 0 if total_steps < 2 else min(10, max(1, total_steps // 20))
    timer = _Timer(device)
    setup_s = time.perf_counter() - t_setup

    losses: list[float] = []
    pending: list[torch.Tensor] = []
    step_samples: list[int] = []
    step_real: list[int] = []
    step_padded: list[int] = []
    step_mflops: list[float] = []
    step_pflops: list[float] = []
    history: list[dict] = []
    nonfinite = False
    step = 0
    train_s = 0.0
    time_to_gate = None
    final_eval = None
    prog = _progress(opts.progress, total_steps, f"fine-tuning {preset.name}")
    L, h = cfg.num_hidden_layers, cfg.hidden_size

    def flush_losses() -> bool:
        if pending:
            values = torch.stack(pending).float().cpu().tolist()
            pending.clear()
            losses.extend(values)
            return all(math.isfinite(v) for v in values)
        return True

    try:
        for epoch in range(epochs):
            rng = random.Random(f"{preset.seed}-{epoch}")
            batches = length_buckets(batcher.lengths, batch_size, rng, opts.bucket_batches)
            if step + len(batches) > total_steps:
                batches = batches[: total_steps - step]
            t_epoch = time.perf_counter()
            for idx, cpu_batch in prefetch(batcher, batches, background=device.type == "cuda"):
                timer.step()
                batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
                with _autocast(device, dtype):
                    loss = run_model(**batch).loss
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), preset.max_grad_norm)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                pending.append(loss.detach())
                lens = [batcher.lengths[i] for i in idx]
                padded = cpu_batch["input_ids"].shape[1]
                step_samples.append(len(idx))
                step_real.append(sum(lens))
                step_padded.append(padded * len(idx))
                step_mflops.append(sum(perf.sequence_flops(n_matmul, L, h, n) for n in lens))
                step_pflops.append(len(idx) * perf.sequence_flops(n_matmul, L, h, padded))
                step += 1
                if step % opts.log_every == 0 or step == total_steps:
                    if not flush_losses():
                        nonfinite = True
                        break
                    if prog is not None:
                        rate = sum(step_samples) / max(
                            1e-9, train_s + time.perf_counter() - t_epoch
                        )
                        prog.update(
                            prog.task_ids[0],
                            completed=step,
                            info=f"loss {losses[-1]:.4f}  {rate:,.0f} samples/s",
                        )
            timer.close_chain()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_s += time.perf_counter() - t_epoch
            if nonfinite or not flush_losses():
                nonfinite = True
                break
            last = epoch == epochs - 1
            if last or opts.eval_each_epoch:
                ev = evaluate(run_model, prep)
                history.append(
                    {"epoch": epoch + 1, "step": step, "f1": ev["f1"], "train_s": round(train_s, 4)}
                )
                if time_to_gate is None and ev["f1"] >= preset.f1_gate:
                    time_to_gate = train_s
                final_eval = ev
    except Exception as exc:
        if _is_oom(exc):
            raise OutOfMemory(str(exc).splitlines()[0] if str(exc) else "out of memory") from None
        raise
    finally:
        if prog is not None:
            prog.stop()

    durations = timer.durations()
    if final_eval is None:  # stopped early (non-finite loss): evaluate what we have
        final_eval = evaluate(run_model, prep)
    timed = slice(min(n_warm, max(0, len(durations) - 1)), len(durations))
    t_steps = durations[timed]
    timed_s = sum(t_steps) or float("nan")

    def rate(values: list) -> float | None:
        v = sum(values[timed])
        return v / timed_s if t_steps and timed_s > 0 else None

    model_flops_per_s = rate(step_mflops)
    padded_flops_per_s = rate(step_pflops)
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = perf.find_peak(gpu_name)
    tf32 = device.type == "cuda"
    peak_tf = perf.peak_tflops(peak, dtype, tf32) if peak else None
    mfu = (model_flops_per_s / (peak_tf * 1e12)) if (peak_tf and model_flops_per_s) else None
    if device.type == "cuda":
        peak_mem, mem_source = (
            torch.cuda.max_memory_allocated(device),
            "torch.cuda.max_memory_allocated",
        )
    else:
        peak_mem, mem_source = perf.process_peak_rss(), "process peak RSS (ru_maxrss)"
    if device.type != "cuda":
        mfu_note = "no MFU on CPU"
    elif peak is None:
        mfu_note = f"no peak FLOP/s on record for {gpu_name!r}"
    elif peak_tf is None:
        mfu_note = f"no {dtype} peak on record for {gpu_name!r}"
    else:
        mfu_note = None

    n = max(1, len(losses) // 10)
    loss_first = sum(losses[:n]) / n if losses else None
    loss_last = sum(losses[-n:]) / n if losses else None
    finite = bool(losses) and not nonfinite and all(math.isfinite(v) for v in losses)
    fell = finite and len(losses) >= 2 and loss_last < loss_first
    reasons = []
    if not finite:
        reasons.append("the loss is not finite (NaN or inf)")
    elif not fell:
        reasons.append("the loss did not fall")
    if final_eval["f1"] < preset.f1_gate:
        reasons.append(f"dev F1 {final_eval['f1']:.4f} is below the gate {preset.f1_gate}")
    passed = not reasons
    stride = max(1, len(losses) // 200)
    curve = [
        [i + 1, round(v, 5) if math.isfinite(v) else str(v)]
        for i, v in enumerate(losses)
        if i % stride == 0 or i == len(losses) - 1
    ]

    if opts.output_dir:
        save(model, prep.tokenizer, opts.output_dir)

    final_eval.pop("_predictions", None)
    final_eval["history"] = history
    import tokenizers
    import transformers

    return {
        "schema_version": SCHEMA_VERSION,
        "status": "nan-loss" if not finite else ("ok" if passed else "gate-failed"),
        "error": None,
        "device": str(device),
        "gpu_name": gpu_name,
        "dtype": dtype,
        "model": {
            "source": opts.model or f"preset:{preset.name}",
            "architecture": type(model).__name__,
            "parameters": n_params,
            "matmul_weights": n_matmul,
            "hidden_size": cfg.hidden_size,
            "num_layers": cfg.num_hidden_layers,
            "num_heads": cfg.num_attention_heads,
            "intermediate_size": cfg.intermediate_size,
            "vocab_size": cfg.vocab_size,
            "num_labels": len(prep.labels),
            "attn_implementation": getattr(cfg, "_attn_implementation", None),
            "compiled": opts.compile,
        },
        "config": {
            "preset": preset.name,
            "epochs": preset.epochs,
            "max_steps": opts.max_steps,
            "total_steps": total_steps,
            "batch_size": batch_size,
            "eval_batch_size": preset.eval_batch_size,
            "max_length": preset.max_length,
            "lr": preset.lr,
            "warmup_ratio": preset.warmup_ratio,
            "warmup_steps": warmup,
            "weight_decay": preset.weight_decay,
            "max_grad_norm": preset.max_grad_norm,
            "seed": preset.seed,
            "optimizer": opt_name,
            "schedule": "linear warm-up and decay",
            "grad_scaler": scaler is not None,
            "tf32": tf32,
            "length_bucketing_window": opts.bucket_batches,
            "pad_to_multiple_of": multiple,
            "f1_gate": preset.f1_gate,
        },
        "data": prep.data_info,
        "train": {
            "steps": step,
            "epochs_completed": len(history) if opts.eval_each_epoch else step / steps_per_epoch,
            "samples": sum(step_samples),
            "wall_s": train_s,
            "setup_s": setup_s,
            "tokenizer_s": prep.tokenizer_s,
            "samples_per_s": rate(step_samples),
            "samples_per_s_wall": sum(step_samples) / train_s if train_s > 0 else None,
            "real_tokens_per_s": rate(step_real),
            "padded_tokens_per_s": rate(step_padded),
            "padding_fraction": 1 - sum(step_real) / sum(step_padded) if step_padded else None,
            "step_time_p50_s": perf.percentile(t_steps, 50),
            "step_time_p95_s": perf.percentile(t_steps, 95),
            "step_time_mean_s": (timed_s / len(t_steps)) if t_steps else None,
            "timed_steps": len(t_steps),
            "warmup_steps_excluded": len(durations) - len(t_steps),
            "peak_memory_bytes": peak_mem,
            "peak_memory_source": mem_source,
            "model_flops_per_token": (sum(step_mflops) / sum(step_real)) if step_real else None,
            "model_tflops_per_s": model_flops_per_s / 1e12 if model_flops_per_s else None,
            "padded_tflops_per_s": padded_flops_per_s / 1e12 if padded_flops_per_s else None,
            "peak_tflops": peak_tf,
            "peak_tflops_source": peak.source if peak else None,
            "mfu": mfu,
            "padded_flops_utilization": (padded_flops_per_s / (peak_tf * 1e12))
            if (peak_tf and padded_flops_per_s)
            else None,
            "mfu_note": mfu_note,
            "time_to_gate_s": time_to_gate,
            "loss_first": loss_first,
            "loss_last": loss_last,
            "loss_curve": curve,
        },
        "eval": final_eval,
        "gate": {
            "passed": passed,
            "f1_threshold": preset.f1_gate,
            "f1": final_eval["f1"],
            "loss_finite": finite,
            "loss_fell": fell,
            "reasons": reasons,
        },
        "output_dir": opts.output_dir,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "cuda": torch.version.cuda,
        },
        "host": {"cpu_threads": torch.get_num_threads(), "machine": platform.machine()},
    }


def save(model, tokenizer, output_dir: str) -> None:
    """save_pretrained the model and tokenizer so that `--model output_dir` reloads them."""
    os.makedirs(output_dir, exist_ok=True)
    model = getattr(model, "_orig_mod", model)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
