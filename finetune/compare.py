"""`python -m finetune.compare`: our loop against a reference Hugging Face `Trainer` run.

Both runs get the same tokenised data, the same randomly initialised model (same seed, same
weights), batch size, max length, epochs, learning rate, warm-up, weight decay, gradient
clipping and dtype, in the same process. The reference follows run_ner.py: `Trainer` with
`DataCollatorForTokenClassification` (dynamic padding, random batches), default optimizer
(`adamw_torch_fused` on torch >= 2.8), evaluation with `seqeval`. Our loop groups by length as
by default (windows of 3 batches; `--random-too` adds a run with random batches, which is what
grouping's F1 cost is measured against). Samples/s is, for both,
training samples divided by the wall time of the whole training call (set-up, warm-up and
data loading included, evaluation excluded).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence

from finetune.cli import (
    EXIT_INPUT,
    _finite,
    _Parser,
    _write_json,
    add_workload_arguments,
    workload_options,
)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m finetune.compare",
        description="Our fine-tuning loop side by side with a reference HF Trainer run.",
    )
    add_workload_arguments(p)
    p.add_argument(
        "--seeds",
        metavar="S,S,...",
        help="repeat for several seeds (corpus, weights and batch order) and report means",
    )
    p.add_argument("--order", choices=["reference-first", "ours-first"], default="reference-first")
    p.add_argument(
        "--bucket-batches",
        type=int,
        default=3,  # python -m finetune's default (a test checks it)
        metavar="W",
        help="our loop's length grouping window in batches (default 3, as python -m finetune; "
        "1: random batches, as the reference; 0: the Trainer's group_by_length window)",
    )
    p.add_argument(
        "--random-too",
        action="store_true",
        help="also run our loop with random batches (--bucket-batches 1): what grouping costs",
    )
    p.add_argument(
        "--train-limit",
        type=int,
        metavar="N",
        help="train on the first N sentences of --train-file only",
    )
    p.add_argument("--json", metavar="FILE")
    return p


def run_reference(prep, model) -> dict:
    """run_ner.py-style Trainer training, then prediction on the dev set."""
    import numpy as np
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    p = prep.preset
    features = [
        {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
        for ids, labels in zip(prep.train_enc.input_ids, prep.train_enc.labels, strict=True)
    ]
    eval_features = [
        {"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in prep.eval_enc.input_ids
    ]
    collator = DataCollatorForTokenClassification(
        prep.tokenizer, pad_to_multiple_of=8 if prep.dtype == "fp16" else None
    )
    with tempfile.TemporaryDirectory(prefix="finetune-ref-") as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=p.batch_size,
            per_device_eval_batch_size=p.eval_batch_size,
            num_train_epochs=p.epochs,
            learning_rate=p.lr,
            weight_decay=p.weight_decay,
            warmup_steps=p.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
            lr_scheduler_type="linear",
            max_grad_norm=p.max_grad_norm,
            seed=p.seed,
            bf16=prep.dtype == "bf16",
            fp16=prep.dtype == "fp16",
            use_cpu=prep.device.type == "cpu",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collator)
        if not prep.opts.verbose:  # its end-of-training metrics dict, printed with print()
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        out_train = trainer.train()
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        logits = trainer.predict(eval_features).predictions
        eval_s = time.perf_counter() - t1
    best = np.argmax(logits, axis=-1)
    preds = []
    for i, first in enumerate(prep.eval_enc.first_token):
        preds.append([prep.labels[best[i][pos]] if pos >= 0 else "O" for pos in first])
    gold = [list(s.tags) for s in prep.eval_sentences]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f1 = f1_score(gold, preds)
        precision = precision_score(gold, preds)
        recall = recall_score(gold, preds)
    samples = len(features) * p.epochs
    return {
        "samples": samples,
        "wall_s": wall,
        "samples_per_s": samples / wall,
        "trainer_samples_per_s": out_train.metrics.get("train_samples_per_second"),
        "optimizer": str(args.optim),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "eval_s": eval_s,
        "train_loss": out_train.training_loss,
    }


def run_ours(prep, model) -> dict:
    from seqeval.metrics import f1_score

    from finetune import train as tr

    t0 = time.perf_counter()
    doc = tr.train_and_evaluate(prep, model)
    total = time.perf_counter() - t0
    wall = total - doc["eval"]["eval_s"]
    preds = tr.predict(
        model,
        prep.eval_enc,
        prep.labels,
        prep.device,
        prep.dtype,
        prep.preset.eval_batch_size,
        prep.tokenizer.pad_token_id,
    )
    gold = [list(s.tags) for s in prep.eval_sentences]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seqeval_f1 = float(f1_score(gold, preds))
    t = doc["train"]
    return {
        "samples": t["samples"],
        "wall_s": wall,
        "samples_per_s": t["samples"] / wall,
        "steady_samples_per_s": t["samples_per_s"],
        "padding_fraction": t["padding_fraction"],
        "length_bucketing_window": doc["config"]["length_bucketing_window"],
        "optimizer": doc["config"]["optimizer"],
        "f1": doc["eval"]["f1"],
        "f1_seqeval": seqeval_f1,
        "precision": doc["eval"]["precision"],
        "recall": doc["eval"]["recall"],
        "eval_s": doc["eval"]["eval_s"],
        "loss_last": t["loss_last"],
        "mfu": t["mfu"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from finetune import quiet

    quiet.configure(verbose=args.verbose)
    from finetune import train as tr

    try:
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    except ValueError:
        print(
            f"finetune.compare: error: --seeds {args.seeds!r}: expected integers separated by commas",
            file=sys.stderr,
        )
        return EXIT_INPUT
    runs = []
    for seed in seeds:
        opts = workload_options(
            args,
            seed=seed,
            eval_each_epoch=False,
            progress=False,
            bucket_batches=args.bucket_batches,
            train_limit=args.train_limit,
        )
        try:
            prep = tr.prepare(opts)
        except tr.InputError as exc:
            print(f"finetune.compare: error: {exc}", file=sys.stderr)
            return EXIT_INPUT
        results = {}
        order = ["reference", "ours"] if args.order == "reference-first" else ["ours", "reference"]
        if args.random_too:
            order.append("ours_random")
        for name in order:
            model = tr.build_model(prep)  # same seed: the same initial weights for every run
            if name == "reference":
                results[name] = run_reference(prep, model)
            elif name == "ours":
                results[name] = run_ours(prep, model)
            else:
                prep.opts.bucket_batches = 1
                results[name] = run_ours(prep, model)
                prep.opts.bucket_batches = args.bucket_batches
            del model
        results["seed"] = prep.preset.seed
        runs.append(results)
        if len(seeds) > 1:
            print(
                f"  seed {prep.preset.seed}: reference {results['reference']['samples_per_s']:.1f} "
                f"samples/s F1 {results['reference']['f1']:.4f}; ours "
                f"{results['ours']['samples_per_s']:.1f} samples/s F1 {results['ours']['f1']:.4f}"
                + (
                    f"; ours random {results['ours_random']['samples_per_s']:.1f} samples/s "
                    f"F1 {results['ours_random']['f1']:.4f}"
                    if args.random_too
                    else ""
                ),
                flush=True,
            )

    def mean(side: str, key: str) -> float:
        return sum(r[side][key] for r in runs) / len(runs)

    ref = {
        k: mean("reference", k) for k in ("samples_per_s", "wall_s", "f1", "precision", "recall")
    }
    keys = ("samples_per_s", "wall_s", "f1", "precision", "recall")
    ours = {k: mean("ours", k) for k in (*keys, "padding_fraction")}
    random_batches = (
        {k: mean("ours_random", k) for k in (*keys, "padding_fraction")}
        if args.random_too
        else None
    )
    import torch
    import transformers

    doc = _finite(
        {
            "schema_version": 1,
            "preset": prep.preset.name,
            "device": str(prep.device),
            "gpu_name": torch.cuda.get_device_name(prep.device)
            if prep.device.type == "cuda"
            else None,
            "dtype": prep.dtype,
            "config": {
                "batch_size": prep.preset.batch_size,
                "max_length": prep.preset.max_length,
                "epochs": prep.preset.epochs,
                "lr": prep.preset.lr,
                "seeds": [r["seed"] for r in runs],
                "train_sentences": len(prep.train_sentences),
                "eval_sentences": len(prep.eval_sentences),
                "order": args.order,
                "model": args.model or f"preset:{prep.preset.name}",
                "data": prep.data_info.get("source"),
                "length_bucketing_window": runs[0]["ours"]["length_bucketing_window"],
            },
            "reference": ref,
            "ours": ours,
            "ours_random": random_batches,
            "runs": runs,
            "speedup": ours["samples_per_s"] / ref["samples_per_s"],
            "f1_delta": ours["f1"] - ref["f1"],
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
            "host": {
                "cpu_threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "loadavg_after": list(os.getloadavg()),
            },
        }
    )
    print(
        f"preset {doc['preset']} on {doc['device']} ({doc['dtype']}), batch "
        f"{prep.preset.batch_size}, max length {prep.preset.max_length}, {prep.preset.epochs} "
        f"epochs, lr {prep.preset.lr}, {len(prep.train_sentences)} train sentences, "
        f"{len(runs)} seed(s) (means), model {doc['config']['model']}"
    )
    print(
        f"  reference HF Trainer : {ref['samples_per_s']:9.1f} samples/s  "
        f"({ref['wall_s']:.1f} s)  dev F1 {ref['f1']:.4f}"
    )
    print(
        f"  finetune (ours)      : {ours['samples_per_s']:9.1f} samples/s  "
        f"({ours['wall_s']:.1f} s)  dev F1 {ours['f1']:.4f}"
    )
    if random_batches:
        print(
            f"  ours, random batches : {random_batches['samples_per_s']:9.1f} samples/s  "
            f"({random_batches['wall_s']:.1f} s)  dev F1 {random_batches['f1']:.4f}"
        )
    print(f"  ratio ours/reference : {doc['speedup']:.2f}x samples/s, F1 {doc['f1_delta']:+.4f}")
    if args.json:
        _write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
