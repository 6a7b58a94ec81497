"""Label alignment with word_ids(): first sub-token labelled, the rest and specials -100."""

from __future__ import annotations

import pytest

from finetune.align import IGNORE, align_labels, encode
from finetune.config import LABELS
from finetune.data import Sentence, generate_corpus
from finetune.tokenizer import train_wordpiece

L2I = {label: i for i, label in enumerate(LABELS)}


@pytest.fixture(scope="module")
def char_tokenizer():
    # a vocabulary so small that most words split into many sub-words
    train, _ = generate_corpus(200, 1, seed=0)
    return train_wordpiece(train, vocab_size=120, model_max_length=512)


def test_align_labels_unit():
    word_ids = [None, 0, 0, 0, 1, 2, 2, None]
    assert align_labels(word_ids, [3, 0, 5]) == [IGNORE, 3, IGNORE, IGNORE, 0, 5, IGNORE, IGNORE]


def test_words_split_into_many_subwords(char_tokenizer):
    s = Sentence(
        ("Zwobrakulentix", "met", "Quorvandelith", "Industries"), ("B-PER", "O", "B-ORG", "I-ORG")
    )
    enc = encode(char_tokenizer, [s], L2I, max_length=512)
    ids, labels, first = enc.input_ids[0], enc.labels[0], enc.first_token[0]
    tokens = char_tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert labels[0] == IGNORE and labels[-1] == IGNORE
    assert len(ids) > 3 * len(s.words)  # really split into many pieces
    # exactly one labelled token per word, the first one, carrying the word's tag
    labelled = [(i, lab) for i, lab in enumerate(labels) if lab != IGNORE]
    assert [i for i, _ in labelled] == first
    assert [LABELS[lab] for _, lab in labelled] == list(s.tags)
    for w, pos in enumerate(first):
        assert not tokens[pos].startswith("##"), (w, tokens[pos])
    assert enc.truncated_words == 0


def test_truncation_is_counted(char_tokenizer):
    s = Sentence(tuple(["Abcdefgh"] * 10), tuple(["B-PER"] + ["I-PER"] * 9))
    full = encode(char_tokenizer, [s], L2I, max_length=512)
    per_word = (len(full.input_ids[0]) - 2) // 10
    enc = encode(
        char_tokenizer, [s, Sentence(("a",), ("O",))], L2I, max_length=2 + 3 * per_word + 1
    )
    assert len(enc.input_ids[0]) == 2 + 3 * per_word + 1
    kept = [p for p in enc.first_token[0] if p >= 0]
    assert len(kept) == 4  # the fourth word keeps its first piece and thus its label
    assert enc.truncated_words == 6
    assert enc.truncated_sentences == 1
    assert enc.first_token[0][4:] == [-1] * 6


def test_tokenizer_of_unseen_words_has_no_unknowns(char_tokenizer):
    ids = char_tokenizer(["Xylophonic", "Qatz"], is_split_into_words=True)["input_ids"]
    assert char_tokenizer.unk_token_id not in ids


def test_fast_tokenizer_round_trip(tmp_path, char_tokenizer):
    from finetune.tokenizer import load_tokenizer

    char_tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))
    words = ["Hello", "Zwobrak", "."]
    assert (
        again(words, is_split_into_words=True)["input_ids"]
        == char_tokenizer(words, is_split_into_words=True)["input_ids"]
    )
