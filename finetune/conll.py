"""CoNLL reading and writing.

Accepted input: one token per line, columns separated by spaces or tabs, the word first and
the NER tag last (CoNLL-2003 has word, POS, chunk, NER); sentences separated by blank or
whitespace-only lines; ``-DOCSTART-`` lines as document separators; tags in IOB1 or IOB2
(returned as IOB2). Anything else is a :class:`ConllError` naming the file and the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from finetune.data import Sentence
from gpucheck.io import write_atomic  # the one atomic writer (temp file, then rename)

MAX_LINE_CHARS = 10_000
MAX_FILE_BYTES = 2 * 1024**3
_TAG = re.compile(r"^(?:O|[BI]-[^\s-][^\s]*)$")


class ConllError(ValueError):
    """A CoNLL file that cannot be used; the message names the file and, when known, the line."""


@dataclass(frozen=True)
class ConllFile:
    sentences: list[Sentence]
    columns: int
    documents: int
    converted_iob1: int  # tags rewritten from IOB1 to IOB2 (I-X opening an entity -> B-X)


def to_iob2(tags: Sequence[str]) -> tuple[list[str], int]:
    """IOB1 (or IOB2) tags as IOB2, and how many tags were changed."""
    out: list[str] = []
    changed = 0
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
            changed += 1
        out.append(tag)
        prev = tag
    return out, changed


def read_conll(path: str | os.PathLike[str]) -> ConllFile:
    p = Path(path)
    name = str(path)
    try:
        if p.is_dir():
            raise ConllError(f"{name}: is a folder, not a CoNLL file")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConllError(f"{name}: {size} bytes is too large for a CoNLL file")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConllError(f"{name}: no such file") from None
    except PermissionError:
        raise ConllError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ConllError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in raw[:65536]:
        raise ConllError(f"{name}: looks like a binary file (NUL bytes), not CoNLL text")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConllError(f"{name}:{line}: not UTF-8 text (byte {exc.start})") from None
    return parse_conll(text.splitlines(), name)


def parse_conll(lines: Iterable[str], name: str = "<conll>") -> ConllFile:
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    columns = 0
    columns_line = 0
    documents = 0
    converted = 0

    def flush() -> None:
        nonlocal converted
        if words:
            iob2, changed = to_iob2(tags)
            converted += changed
            sentences.append(Sentence(tuple(words), tuple(iob2)))
            words.clear()
            tags.clear()

    for lineno, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_CHARS:
            raise ConllError(
                f"{name}:{lineno}: line of {len(line)} characters is too long "
                f"(at most {MAX_LINE_CHARS}); is this a CoNLL file?"
            )
        fields = line.split()
        if not fields:
            flush()
            continue
        if fields[0] == "-DOCSTART-":
            flush()
            documents += 1
            continue
        if len(fields) < 2:
            raise ConllError(
                f"{name}:{lineno}: expected a word and a tag separated by a space "
                f"or tab, got {line.strip()[:60]!r}"
            )
        if columns == 0:
            columns, columns_line = len(fields), lineno
        elif len(fields) != columns:
            raise ConllError(
                f"{name}:{lineno}: {len(fields)} columns, but line {columns_line} has {columns}"
            )
        tag = fields[-1]
        if not _TAG.match(tag):
            raise ConllError(
                f"{name}:{lineno}: invalid NER tag {tag[:40]!r} in the last column "
                "(expected O, B-TYPE or I-TYPE)"
            )
        words.append(fields[0])
        tags.append(tag)
    flush()
    if not sentences:
        raise ConllError(f"{name}: no sentences (the file is empty or holds only separators)")
    return ConllFile(sentences, columns, documents, converted)


def format_conll(
    sentences: Sequence[Sentence], predictions: Sequence[Sequence[str]] | None = None
) -> str:
    """CoNLL text: ``word tag`` per line, or ``word gold predicted`` (conlleval's input)."""
    out: list[str] = []
    for i, s in enumerate(sentences):
        for j, (w, t) in enumerate(zip(s.words, s.tags, strict=True)):
            if predictions is None:
                out.append(f"{w} {t}")
            else:
                out.append(f"{w} {t} {predictions[i][j]}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def write_conll(
    path: str | os.PathLike[str],
    sentences: Sequence[Sentence],
    predictions: Sequence[Sequence[str]] | None = None,
) -> None:
    for s in sentences:
        for w in s.words:
            if not w or any(c.isspace() for c in w):
                raise ConllError(f"{path}: the word {w!r} cannot be written to CoNLL (whitespace)")
    write_atomic(path, format_conll(sentences, predictions))


def load_hf_dataset(spec: str, split: str, download: bool = False) -> list[Sentence]:
    """``hf:NAME[:CONFIG]``: one split of a hub dataset with tokens and ner_tags columns, from
    the local cache, or fetched when `download` allows (finetune.hub_data says how)."""
    from finetune.hub_data import load_split  # lazy: needs huggingface_hub and pyarrow

    return load_split(spec, split, download)
