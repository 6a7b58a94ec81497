"""Our entity-level metrics equal seqeval's on the same predictions."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from finetune.metrics import entities, score, token_accuracy

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-MISC"]
sentence = st.lists(st.sampled_from(TAGS), min_size=0, max_size=10)


@st.composite
def gold_and_pred(draw):
    gold = draw(st.lists(sentence, min_size=1, max_size=6))
    pred = [draw(st.lists(st.sampled_from(TAGS), min_size=len(s), max_size=len(s))) for s in gold]
    return gold, pred


def _seqeval(gold, pred, strict):
    kw = {"mode": "strict", "scheme": IOB2} if strict else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            precision_score(gold, pred, zero_division=0, **kw),
            recall_score(gold, pred, zero_division=0, **kw),
            f1_score(gold, pred, zero_division=0, **kw),
            classification_report(gold, pred, output_dict=True, zero_division=0, **kw),
        )


@settings(max_examples=400, deadline=None)
@given(gold_and_pred(), st.booleans())
def test_equals_seqeval(data, strict):
    gold, pred = data
    ours = score(gold, pred, strict=strict)
    p, r, f, report = _seqeval(gold, pred, strict)
    assert ours["precision"] == pytest.approx(p, abs=1e-12)
    assert ours["recall"] == pytest.approx(r, abs=1e-12)
    assert ours["f1"] == pytest.approx(f, abs=1e-12)
    for kind, row in ours["per_type"].items():
        assert kind in report
        assert row["precision"] == pytest.approx(report[kind]["precision"], abs=1e-12)
        assert row["recall"] == pytest.approx(report[kind]["recall"], abs=1e-12)
        assert row["f1"] == pytest.approx(report[kind]["f1-score"], abs=1e-12)
        assert row["support"] == report[kind]["support"]
    if report.get("micro avg"):
        assert ours["support"] == report["micro avg"]["support"]


def test_readme_example_default_vs_strict():
    gold, pred = [["B-NP", "I-NP", "O"]], [["I-NP", "I-NP", "O"]]
    assert score(gold, pred)["f1"] == 1.0
    assert score(gold, pred, strict=True)["f1"] == 0.0


def test_entities():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "B-X"]
    assert entities(tags) == [
        (0, "PER", 0, 1),
        (0, "LOC", 3, 4),
        (0, "LOC", 5, 5),
        (0, "ORG", 6, 6),
        (0, "X", 7, 7),
    ]
    assert entities(tags, strict=True) == [(0, "PER", 0, 1), (0, "LOC", 5, 5), (0, "X", 7, 7)]


def test_perfect_and_empty():
    gold = [["B-PER", "I-PER", "O"], ["O"]]
    assert score(gold, gold)["f1"] == 1.0
    assert score(gold, [["O", "O", "O"], ["O"]])["f1"] == 0.0
    assert score([["O"]], [["O"]])["f1"] == 0.0
    assert token_accuracy(gold, gold) == 1.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        score([["O"]], [["O", "O"]])
    with pytest.raises(ValueError):
        score([["O"]], [])
