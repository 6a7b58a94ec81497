"""A seeded synthetic NER corpus: PER, ORG, LOC and MISC in IOB2 tags.

Entity names are made of generated words; the words used in dev names never occur in train
names, so the model has to learn from context and word shape, not memorise a gazetteer.
The same seed always gives the same corpus (``random.Random`` only, no global state).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.words) != len(self.tags):
            raise ValueError("a sentence needs one tag per word")

    def __len__(self) -> int:
        return len(self.words)


_ONSETS = (
    "b",
    "br",
    "c",
    "ch",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "j",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "pr",
    "r",
    "s",
    "sh",
    "st",
    "t",
    "tr",
    "v",
    "w",
    "z",
)
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "y")
_CODAS = ("", "", "", "n", "r", "s", "l", "m", "t", "nd", "rk", "x")

_ORG_SUFFIX = (
    "Corp",
    "Inc",
    "Group",
    "Bank",
    "Holdings",
    "Airlines",
    "Motors",
    "Ltd",
    "Systems",
    "United",
    "Partners",
    "Energy",
)
_LOC_SUFFIX = ("City", "Valley", "Island", "Bay", "Heights", "Springs")
_LOC_ENDINGS = ("ia", "land", "burg", "stan", "ville", "ford", "ton")
_MISC_ADJ_ENDINGS = ("ian", "ese", "ish", "ic")
_MISC_EVENTS = ("Open", "Cup", "Games", "Award", "Festival", "Championship")
_TITLES = ("Mr.", "Mrs.", "Dr.", "President", "coach", "minister", "striker")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "March", "May", "July", "September", "November")
_NUMBERS = ("two", "three", "five", "12", "40", "1996", "3.5", "70", "100", "250")

# {P}=PER {O}=ORG {L}=LOC {M}=MISC {D}=day {N}=number {T}=title {X}=month; [...] is optional
# (each kept with probability 1/2), so that sentences of one template differ in length too
_TEMPLATES = (
    "{P} said [on {D}] that {O} would [soon] open an office in {L} .",
    "{O} shares rose {N} percent in [early trading in] {L} [on {D}] .",
    "{T} {P} of {O} arrived in {L} [on {D}] for [two days of] talks .",
    "The {M} delegation [led by {P}] met {P} in {L} .",
    "{P} won the {M} after beating {P} in the final .",
    "{O} agreed to buy [rival] {O} for {N} million dollars [in cash] .",
    "Police in {L} arrested {N} people after the match [on {D}] .",
    "{P} , a spokesman for {O} , declined to comment [on the report] .",
    "{L} beat {L} {N} - {N} in {X} .",
    "{M} officials said [on {D}] the talks in {L} had failed .",
    "{O} reported a [net] loss of {N} million [dollars] in {X} .",
    "Rain delayed play at the {M} in {L} .",
    "{P} told reporters in {L} [on {D}] that prices would fall [further] .",
    "According to {O} , exports to {L} grew {N} percent .",
    "{P} joined {O} from {O} last {X} .",
    "The {M} team flew to {L} on {D} .",
    "{T} {P} resigned on {D} .",
    "{O} said it would cut {N} jobs in {L} [by the end of {X}] .",
    "Fans of {O} gathered outside the stadium in {L} .",
    "{P} and {P} will meet in {L} next {X} [to discuss the plan] .",
    "Prices were steady on {D} , traders said .",
    "The {M} government rejected the plan .",
    "{P} scored twice as {O} beat {O} .",
    "Heavy rain hit {L} and {L} overnight [, forcing schools to close] .",
    "{O} chief executive {P} said demand [in {L}] was strong .",
    "A {M} court in {L} fined {O} on {D} .",
    "{N} people were hurt when a bus crashed near {L} [on {D}] .",
    "{P} ( {L} ) {N} {N}",
    "{L} {N} {O} {N}",
    "the talks will resume in {X} , {P} said .",
)
_OPENERS = ("On {D} ,", "In {X} ,", "Earlier ,", "However ,", "Meanwhile ,")
_CLOSERS = (", officials said .", ", {P} said .", ", according to {O} .", ", {M} media reported .")


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _forms(word: str) -> set[str]:
    """Every entity word that can be made from a name word (itself and its derived forms)."""
    root = word.rstrip("aeiouy")
    return {word} | {root + e for e in _LOC_ENDINGS + _MISC_ADJ_ENDINGS}


def _word_pools(rng: random.Random, size: int) -> tuple[list[str], list[str]]:
    """Two lists of generated capitalised words (train, dev) whose derived forms never meet."""
    pools: tuple[list[str], list[str]] = ([], [])
    forms: tuple[set[str], set[str]] = (set(), set())
    turn = 0
    while len(pools[1]) < size:
        w = _word(rng, rng.choice((1, 2, 2, 3)))
        f = _forms(w)
        if len(w) < 3 or f & forms[0] or f & forms[1]:
            continue
        pools[turn].append(w)
        forms[turn].update(f)
        turn = 1 - turn
    return pools[0], pools[1]


class _Names:
    """Entity makers that draw their name words from one pool."""

    def __init__(self, rng: random.Random, pool: Sequence[str]) -> None:
        self.rng = rng
        self.pool = pool

    def _stem(self) -> str:
        return self.rng.choice(self.pool)

    def per(self) -> list[str]:
        n = self.rng.choices((1, 2, 3), weights=(2, 7, 1))[0]
        return [self._stem() for _ in range(n)]

    def org(self) -> list[str]:
        words = [self._stem() for _ in range(self.rng.choice((1, 1, 2)))]
        if self.rng.random() < 0.7:
            words.append(self.rng.choice(_ORG_SUFFIX))
        return words

    def loc(self) -> list[str]:
        r = self.rng.random()
        if r < 0.4:
            return [self._stem()]
        if r < 0.75:
            return [self._stem().rstrip("aeiouy") + self.rng.choice(_LOC_ENDINGS)]
        return [self._stem(), self.rng.choice(_LOC_SUFFIX)]

    def misc(self) -> list[str]:
        if self.rng.random() < 0.6:
            return [self._stem().rstrip("aeiouy") + self.rng.choice(_MISC_ADJ_ENDINGS)]
        return [self._stem(), self.rng.choice(_MISC_EVENTS)]


_SLOTS = {"P": "PER", "O": "ORG", "L": "LOC", "M": "MISC"}


def _fill(template: str, names: _Names, words: list[str], tags: list[str]) -> None:
    rng = names.rng
    parts = re.split(r"(\[[^\]]*\])", template)
    template = " ".join(
        p[1:-1] if p.startswith("[") else p
        for p in parts
        if not p.startswith("[") or rng.random() < 0.5
    )
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            key = piece[1:-1]
            if key in _SLOTS:
                kind = _SLOTS[key]
                entity = getattr(names, kind.lower())()
                words.extend(entity)
                tags.extend([f"B-{kind}"] + [f"I-{kind}"] * (len(entity) - 1))
                continue
            filler = {"D": _DAYS, "N": _NUMBERS, "T": _TITLES, "X": _MONTHS}[key]
            words.append(rng.choice(filler))
        else:
            words.append(piece)
        tags.append("O")


def _sentence(names: _Names) -> Sentence:
    rng = names.rng
    words: list[str] = []
    tags: list[str] = []
    if rng.random() < 0.2:
        _fill(rng.choice(_OPENERS), names, words, tags)
    _fill(rng.choice(_TEMPLATES), names, words, tags)
    if rng.random() < 0.25 and words[-1] == ".":
        words.pop()
        tags.pop()
        if rng.random() < 0.5:
            _fill(rng.choice(_CLOSERS), names, words, tags)
        else:
            words.append("and")
            tags.append("O")
            second: list[str] = []
            second_tags: list[str] = []
            _fill(rng.choice(_TEMPLATES), names, second, second_tags)
            if second[0] in ("The", "A"):
                second[0] = second[0].lower()
            words.extend(second)
            tags.extend(second_tags)
    return Sentence(tuple(words), tuple(tags))


def generate_corpus(
    train_sentences: int, eval_sentences: int, seed: int = 42
) -> tuple[list[Sentence], list[Sentence]]:
    """(train, dev): deterministic for a seed; dev name words never occur in train names."""
    if train_sentences < 1 or eval_sentences < 1:
        raise ValueError("the corpus needs at least one train and one dev sentence")
    pool_rng = random.Random(f"finetune-pools-{seed}")
    train_pool, dev_pool = _word_pools(pool_rng, 4000)
    train_names = _Names(random.Random(f"finetune-train-{seed}"), train_pool)
    dev_names = _Names(random.Random(f"finetune-dev-{seed}"), dev_pool)
    train = [_sentence(train_names) for _ in range(train_sentences)]
    dev = [_sentence(dev_names) for _ in range(eval_sentences)]
    return train, dev


def entity_words(sentences: Sequence[Sentence]) -> set[str]:
    """Every word tagged as part of an entity (used to check train/dev disjointness)."""
    out: set[str] = set()
    for s in sentences:
        out.update(w for w, t in zip(s.words, s.tags, strict=True) if t != "O")
    return out


def name_words(sentences: Sequence[Sentence]) -> set[str]:
    """Entity words that are generated names (the shared ORG/LOC/MISC suffix words excluded)."""
    shared = set(_ORG_SUFFIX) | set(_LOC_SUFFIX) | set(_MISC_EVENTS)
    return entity_words(sentences) - shared
