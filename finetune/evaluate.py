"""Evaluation: word-level predictions on the dev set and their entity-level scores."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from finetune.align import Encoded
from finetune.amp import autocast
from finetune.batching import Batcher
from finetune.metrics import score, token_accuracy


@dataclass
class EvalResult:
    """Entity-level micro scores (conlleval semantics) and the predictions they came from."""

    f1: float
    precision: float
    recall: float
    per_type: dict
    entities: int
    predicted_entities: int
    correct_entities: int
    strict_iob2: dict
    token_accuracy: float
    sentences: int
    eval_s: float
    predictions: list[list[str]] = field(repr=False, default_factory=list)

    def to_json(self, history: list[dict]) -> dict:
        """The `eval` section of the result document (the predictions are left out)."""
        doc = {k: v for k, v in self.__dict__.items() if k != "predictions"}
        doc["history"] = history
        return doc


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
    order = sorted(range(len(enc)), key=batcher.lengths.__getitem__)  # less padding
    out: list[list[str]] = [[] for _ in range(len(enc))]
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(device, dtype):
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


def evaluate(model, prep, batch_size: int | None = None) -> EvalResult:
    """Predict the dev set of a `Prepared` run and score it against the gold tags."""
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
    return EvalResult(
        f1=main["f1"],
        precision=main["precision"],
        recall=main["recall"],
        per_type=main["per_type"],
        entities=main["support"],
        predicted_entities=main["predicted"],
        correct_entities=main["correct"],
        strict_iob2={k: strict[k] for k in ("f1", "precision", "recall")},
        token_accuracy=token_accuracy(gold, preds),
        sentences=len(gold),
        eval_s=time.perf_counter() - t0,
        predictions=preds,
    )
