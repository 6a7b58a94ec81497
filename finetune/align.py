"""Sub-word alignment of word-level tags, with ``word_ids()`` as run_ner.py does it.

The first sub-token of each word carries the word's label; later sub-tokens and the special
tokens get -100 (ignored by the loss). Words that lose all their tokens to truncation are
counted, never dropped silently: evaluation scores them as predicted ``O`` against the full
gold sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from finetune.data import Sentence

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    first_token: list[list[int]] = field(default_factory=list)  # per word; -1 when lost
    truncated_words: int = 0  # words past max_length
    truncated_sentences: int = 0
    empty_words: int = 0  # words the tokenizer turned into no token at all

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Token labels for one sequence: the label on each word's first sub-token, else -100."""
    out: list[int] = []
    prev: int | None = None
    for w in word_ids:
        if w is None or w == prev:
            out.append(IGNORE)
        else:
            out.append(word_labels[w])
        prev = w
    return out


def encode(
    tokenizer,
    sentences: Sequence[Sentence],
    label2id: Mapping[str, int],
    max_length: int,
    chunk: int = 4096,
) -> Encoded:
    """Tokenise pre-split words (truncating at max_length) and align their labels."""
    enc = Encoded()
    for lo in range(0, len(sentences), chunk):
        part = sentences[lo : lo + chunk]
        batch = tokenizer(
            [list(s.words) for s in part],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        for i, s in enumerate(part):
            word_ids = batch.word_ids(i)
            labels = [label2id[t] for t in s.tags]
            enc.input_ids.append(list(batch["input_ids"][i]))
            enc.labels.append(align_labels(word_ids, labels))
            first = [-1] * len(s.words)
            for pos, w in enumerate(word_ids):
                if w is not None and first[w] < 0:
                    first[w] = pos
            enc.first_token.append(first)
            seen = [w for w in word_ids if w is not None]
            last = max(seen) if seen else -1
            lost_tail = sum(
                1 for w in range(last + 1, len(s.words)) if _has_tokens(tokenizer, s.words[w])
            )
            lost_inside = sum(1 for w in range(last + 1) if first[w] < 0)
            lost_tail_empty = len(s.words) - (last + 1) - lost_tail
            enc.truncated_words += lost_tail
            enc.truncated_sentences += lost_tail > 0
            enc.empty_words += lost_inside + lost_tail_empty
    return enc


def _has_tokens(tokenizer, word: str) -> bool:
    # only called for words after the last one that fit, i.e. only for truncated sentences
    return bool(tokenizer(word, add_special_tokens=False)["input_ids"])
