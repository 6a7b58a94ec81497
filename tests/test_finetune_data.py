"""The synthetic NER corpus: deterministic, valid IOB2, varied, dev names unseen in train."""

from __future__ import annotations

import re

import pytest

from finetune.config import LABELS, PRESETS, get_preset
from finetune.data import Sentence, entity_words, generate_corpus, name_words


def test_same_seed_same_corpus():
    a = generate_corpus(300, 80, seed=5)
    b = generate_corpus(300, 80, seed=5)
    assert a == b


def test_other_seed_other_corpus():
    assert generate_corpus(300, 80, seed=5)[0] != generate_corpus(300, 80, seed=6)[0]


def test_dev_name_words_never_occur_in_train_names():
    train, dev = generate_corpus(3000, 800, seed=42)
    assert name_words(dev)
    assert not name_words(train) & name_words(dev)
    # and no dev name word appears anywhere in train text either
    train_text = {w for s in train for w in s.words}
    assert not name_words(dev) & train_text


def test_tags_are_iob2_over_the_four_types():
    train, dev = generate_corpus(1000, 200, seed=1)
    seen = set()
    for s in train + dev:
        assert len(s.words) == len(s.tags) > 0
        prev = "O"
        for t in s.tags:
            assert t in LABELS
            if t.startswith("I-"):
                assert prev != "O" and prev[2:] == t[2:], s  # strict IOB2: I- continues
            seen.add(t)
            prev = t
    assert {t[2:] for t in seen if t != "O"} == {"PER", "ORG", "LOC", "MISC"}


def test_lengths_and_templates_vary():
    train, _ = generate_corpus(2000, 10, seed=3)
    lengths = {len(s) for s in train}
    assert min(lengths) <= 8 and max(lengths) >= 25
    assert len({s.words[:2] for s in train}) > 100
    assert len(entity_words(train)) > 1000


def test_words_are_conll_safe():
    train, dev = generate_corpus(500, 100)
    for s in train + dev:
        for w in s.words:
            assert w and not re.search(r"\s", w)


def test_bad_sizes_and_sentence_shape():
    with pytest.raises(ValueError):
        generate_corpus(0, 10)
    with pytest.raises(ValueError):
        Sentence(("a", "b"), ("O",))


def test_presets():
    assert set(PRESETS) == {"tiny", "small", "base", "large"}
    base = get_preset("base")
    assert (base.hidden_size, base.num_layers, base.num_heads, base.intermediate_size) == (
        768,
        12,
        12,
        3072,
    )
    for p in PRESETS.values():
        assert 0 < p.f1_gate < 1 and p.hidden_size % p.num_heads == 0
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


def test_lengths_vary_within_a_template():
    # optional segments: one template's sentences are not all one length, so that length
    # grouping does not batch a template with itself
    train, _ = generate_corpus(2000, 10, seed=3)
    plain = [
        len(s)
        for s in train
        if "arrested" in s.words and s.words[0] == "Police" and s.words[-1] == "."
    ]
    assert len(set(plain)) >= 3
