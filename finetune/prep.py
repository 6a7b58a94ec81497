"""Set-up of a run: the options, the device and dtype, the data, the tokenizer and the model.

`prepare()` builds everything a run needs; `finetune.compare` uses it too, so that the
reference Trainer sees the same model, data and tokenizer as our loop.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from finetune.align import Encoded, encode
from finetune.amp import has_grad_scaler
from finetune.config import LABELS, Preset, get_preset
from finetune.data import Sentence, generate_corpus


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
    # Length grouping window, in batches: 3 (the default) groups lengths; 1 gives random batches,
    # as the reference Trainer; 0 the Trainer's group_by_length window (batching.group_window).
    # Why 3: finetune/batching.py DEFAULT_WINDOW and docs/benchmarks.md.
    bucket_batches: int | None = 3
    f1_gate: float | None = None  # ask for this dev F1 (default: the preset's, built-in data only)
    download: bool = False  # allow fetching --model and hf: data from the Hugging Face hub
    verbose: bool = False  # let third-party warnings and load reports through
    train_limit: int | None = None  # use only the first N training sentences (finetune.compare)


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
    model_path: str | None = None  # the local folder --model resolved to
    notes: list[str] = field(default_factory=list)  # one-line notices for the user

    @property
    def builtin_data(self) -> bool:
        return self.data_info.get("source") == "synthetic"

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


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
    if spec == "fp16" and not has_grad_scaler(device.type):
        raise InputError(
            f"--dtype fp16 on {device.type}: torch {torch.__version__} has no fp16 gradient "
            "scaler for it (torch >= 2.3 has); use fp32 or bf16"
        )
    return "fp32" if spec == "auto" else spec


def labels_for(sentences: Sequence[Sentence]) -> list[str]:
    """O, then B-/I- of every entity type in the data, sorted."""
    kinds = sorted({t[2:] for s in sentences for t in s.tags if t != "O"})
    return ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]


def load_data(opts: Options, preset: Preset) -> tuple[list[Sentence], list[Sentence], dict]:
    from finetune.conll import ConllError, load_hf_dataset, read_conll

    eval_file = opts.eval_file
    if eval_file is None and (opts.train_file or "").startswith("hf:"):
        eval_file = opts.train_file  # a hub dataset: its validation split
    if (opts.train_file is None) != (eval_file is None):
        raise InputError("give --train-file and --eval-file together")
    if opts.train_file is None:
        train, dev = generate_corpus(preset.train_sentences, preset.eval_sentences, preset.seed)
        return train, dev, {"source": "synthetic", "seed": preset.seed}
    info: dict = {
        "source": "conll",
        "train_file": opts.train_file,
        "eval_file": eval_file,
        "iob1_converted": 0,
    }
    out = []
    for path, split in ((opts.train_file, "train"), (eval_file, "validation")):
        try:
            if path.startswith("hf:"):
                out.append(load_hf_dataset(path, split, opts.download))
                info["source"] = "hf-datasets"
            else:
                cf = read_conll(path)
                out.append(cf.sentences)
                info["iob1_converted"] += cf.converted_iob1
        except ConllError as exc:
            raise InputError(str(exc)) from None
    if opts.train_limit is not None:
        out[0] = out[0][: opts.train_limit]
    return out[0], out[1], info


# A pretrained checkpoint is fine-tuned with the usual fine-tuning recipe (run_ner.py's learning
# rate and epochs, run_ner_no_trainer.py's max length), not with the built-in preset's, which is
# made for a small model trained from scratch (tiny: lr 1e-3, 7 epochs, 64 tokens).
CHECKPOINT_RECIPE = {"lr": 5e-5, "epochs": 3, "max_length": 128}


def _apply_overrides(opts: Options) -> Preset:
    try:
        preset = get_preset(opts.preset)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if opts.model:
        preset = preset.replace(**CHECKPOINT_RECIPE)
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
    return preset.replace(**changes)


def prepare(opts: Options) -> Prepared:
    """Check the options, load the data and the tokenizer, and tokenise both splits."""
    preset = _apply_overrides(opts)
    if opts.output_dir:
        check_output_dir(opts.output_dir)
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)

    train, dev, info = load_data(opts, preset)
    t0 = time.perf_counter()
    model_path = None
    if opts.model:
        from finetune.checkpoint import check_checkpoint, resolve_model
        from finetune.tokenizer import load_tokenizer

        model_path = resolve_model(opts.model, opts.download)
        cfg = check_checkpoint(opts.model, model_path)
        try:
            tokenizer = load_tokenizer(model_path)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--model {opts.model}: cannot load its tokenizer: {first_line(exc)}"
            ) from None
        if len(tokenizer) > cfg.vocab_size:
            raise InputError(
                f"--model {opts.model}: its tokenizer has {len(tokenizer)} tokens but the model "
                f"has only {cfg.vocab_size} token embeddings"
            )
        limit = getattr(cfg, "max_position_embeddings", None)
        if limit is not None and opts.max_length is None:
            preset = preset.replace(max_length=min(preset.max_length, limit))
        if limit is not None and preset.max_length > limit:
            raise InputError(
                f"--max-length {preset.max_length} is longer than the model's {limit} positions"
            )
    else:
        from finetune.tokenizer import train_wordpiece

        if preset.max_length > preset.max_position_embeddings:
            preset = preset.replace(max_position_embeddings=max(512, preset.max_length))
        tokenizer = train_wordpiece(train, preset.vocab_size, preset.max_position_embeddings)
    labels = list(LABELS) if info["source"] == "synthetic" else labels_for(train + dev)
    if opts.model:
        labels = _checkpoint_label_order(cfg, labels)
    label2id = {label: i for i, label in enumerate(labels)}
    train_enc = encode(tokenizer, train, label2id, preset.max_length)
    eval_enc = encode(tokenizer, dev, label2id, preset.max_length)
    tokenizer_s = time.perf_counter() - t0
    info.update(_data_figures(train, dev, labels, train_enc, eval_enc))
    notes = []
    eval_only = sorted({t for s in dev for t in s.tags} - {t for s in train for t in s.tags})
    info["eval_only_labels"] = eval_only
    if eval_only:
        notes.append(
            "warning: labels only in the eval file, never trained: " + ", ".join(eval_only)
        )
    return Prepared(
        opts, preset, device, dtype, labels, train, dev, tokenizer, train_enc, eval_enc, info,
        tokenizer_s, model_path, notes,
    )  # fmt: skip


def _data_figures(train, dev, labels, train_enc: Encoded, eval_enc: Encoded) -> dict:
    train_lengths = train_enc.lengths
    return {
        "train_sentences": len(train),
        "eval_sentences": len(dev),
        "train_words": sum(len(s) for s in train),
        "eval_words": sum(len(s) for s in dev),
        "labels": labels,
        "truncated_words": {"train": train_enc.truncated_words, "eval": eval_enc.truncated_words},
        "truncated_sentences": {
            "train": train_enc.truncated_sentences,
            "eval": eval_enc.truncated_sentences,
        },
        "empty_words": {"train": train_enc.empty_words, "eval": eval_enc.empty_words},
        "mean_tokens_per_sentence": round(sum(train_lengths) / max(1, len(train_enc)), 2),
        "max_tokens_per_sentence": max(train_lengths, default=0),
    }


def check_output_dir(path: str) -> None:
    """--output-dir must be a folder, or a path one can be made at."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"--output-dir {path}: exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--output-dir {path}: cannot create a folder under {parent}")


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _checkpoint_label_order(cfg, labels: list[str]) -> list[str]:
    """Keep the checkpoint's label order when it already has exactly our label set."""
    theirs = [cfg.id2label[i] for i in sorted(cfg.id2label)] if cfg.id2label else []
    return theirs if sorted(theirs) == sorted(labels) else labels


def build_model(prep: Prepared):
    """A seeded BertForTokenClassification (random init from the preset, or the checkpoint)."""
    from transformers import AutoModelForTokenClassification, BertConfig, BertForTokenClassification

    torch.manual_seed(prep.preset.seed)
    id2label = dict(enumerate(prep.labels))
    if prep.opts.model:
        from finetune.quiet import load_note

        kwargs = dict(
            # fp32 master weights whatever the checkpoint was saved in: transformers 5 loads a
            # bf16/fp16 checkpoint as bf16/fp16 by default (dtype="auto"), and AdamW steps on
            # half-precision weights lose most small updates (autocast gives the bf16 matmuls).
            dtype=torch.float32,
            num_labels=len(prep.labels),
            id2label=id2label,
            label2id=prep.label2id,
            ignore_mismatched_sizes=True,
            local_files_only=True,
            output_loading_info=True,
        )
        path = prep.model_path or prep.opts.model
        try:
            try:
                model, info = AutoModelForTokenClassification.from_pretrained(
                    path, attn_implementation="sdpa", **kwargs
                )
            except ValueError as exc:
                if "sdpa" not in str(exc).lower():
                    raise
                model, info = AutoModelForTokenClassification.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--model {prep.opts.model}: cannot load the model: {first_line(exc)}"
            ) from None
        note = load_note(
            info.get("missing_keys", ()),
            info.get("unexpected_keys", ()),
            info.get("mismatched_keys", ()),
            len(prep.labels),
        )
        model.load_note = note
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
