"""Entity-level precision, recall and F1 with conlleval semantics, and strict IOB2.

Default mode follows conlleval (and seqeval's default mode): a chunk starts at ``B-X``, at an
``I-X`` that follows ``O`` or another type, and ends where the next tag does not continue it,
so an ``I-X`` with no ``B-X`` still counts as an entity. Strict IOB2 (seqeval's
``mode="strict", scheme=IOB2``) only counts ``B-X I-X*`` runs: a stray ``I-X`` opens nothing.
An entity is (sentence, type, first word, last word) and must match exactly; scores are
micro-averaged over all types.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

Entity = tuple[int, str, int, int]  # (sentence, type, start, end inclusive)


def _split(tag: str) -> tuple[str, str]:
    if tag == "O" or len(tag) < 2:
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def entities(sentence: Sequence[str], sent_id: int = 0, strict: bool = False) -> list[Entity]:
    """The entities in one sentence of IOB tags."""
    found: list[Entity] = []
    start = -1
    kind = ""
    prev_prefix = "O"
    for i, tag in enumerate([*sentence, "O"]):
        prefix, t = _split(tag)
        if strict:
            continues = prefix == "I" and start >= 0 and t == kind
        else:
            continues = prefix == "I" and prev_prefix != "O" and t == kind
        if start >= 0 and not continues:
            found.append((sent_id, kind, start, i - 1))
            start = -1
        if not continues:
            if prefix == "B" or (prefix == "I" and not strict):
                start, kind = i, t
            else:
                kind = t if prefix != "O" else ""
        prev_prefix = prefix
    return found


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def score(
    y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], strict: bool = False
) -> dict:
    """Micro P/R/F1 plus per-type rows: {"precision", "recall", "f1", "support", "per_type"}."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold sentences but {len(y_pred)} predicted")
    gold: set[Entity] = set()
    pred: set[Entity] = set()
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} gold tags but {len(p)} predicted")
        gold.update(entities(t, i, strict))
        pred.update(entities(p, i, strict))
    hit = gold & pred
    n_gold = Counter(e[1] for e in gold)
    n_pred = Counter(e[1] for e in pred)
    n_hit = Counter(e[1] for e in hit)
    per_type = {}
    for kind in sorted(set(n_gold) | set(n_pred)):
        p, r, f = _prf(n_hit[kind], n_pred[kind], n_gold[kind])
        per_type[kind] = {"precision": p, "recall": r, "f1": f, "support": n_gold[kind]}
    p, r, f = _prf(len(hit), len(pred), len(gold))
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "support": len(gold),
        "predicted": len(pred),
        "correct": len(hit),
        "per_type": per_type,
    }


def token_accuracy(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> float:
    total = sum(len(t) for t in y_true)
    right = sum(
        a == b for t, p in zip(y_true, y_pred, strict=True) for a, b in zip(t, p, strict=True)
    )
    return right / total if total else 0.0
