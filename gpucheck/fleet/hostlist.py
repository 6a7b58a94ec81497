"""Slurm's hostlist syntax, expanded: `gpu[01-03,07],cpu1` -> gpu01 gpu02 gpu03 gpu07 cpu1.

The same expansion as `scontrol show hostnames` (Slurm's hostlist.c): a bracket holds
comma-separated numbers and ranges; a range keeps the zero padding of its lower bound
(`[08-10]` -> 08 09 10); several brackets in one name multiply (`r[1-2]n[1-2]`); commas outside
brackets separate names. Pure, so that `--nodes` works where Slurm is not installed.
"""

from __future__ import annotations

import re

MAX_HOSTS = 1_000_000  # a typo such as gpu[1-99999999] is an error, not a memory blow-up

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


class HostlistError(ValueError):
    """A hostlist that cannot be expanded; the message names the offending part."""


def expand_hostlist(text: str) -> list[str]:
    """The host names `text` stands for, in order, duplicates kept once."""
    names: list[str] = []
    seen: set[str] = set()
    for item in _split_top(text.strip()):
        if not item:
            raise HostlistError(f"empty host name in {text!r}")
        for name in _expand_one(item):
            if name not in seen:
                seen.add(name)
                names.append(name)
                if len(names) > MAX_HOSTS:
                    raise HostlistError(f"{text!r} names more than {MAX_HOSTS:,} hosts")
    return names


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise HostlistError(f"nested '[' in {text!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HostlistError(f"']' without '[' in {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise HostlistError(f"'[' without ']' in {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _expand_one(item: str) -> list[str]:
    """One name with zero or more bracket groups."""
    open_at = item.find("[")
    if open_at < 0:
        if any(c.isspace() for c in item):
            raise HostlistError(f"space in host name {item!r}")
        return [item]
    close_at = item.index("]", open_at)
    prefix, body, rest = item[:open_at], item[open_at + 1 : close_at], item[close_at + 1 :]
    tails = _expand_one(rest) if rest else [""]
    heads = [prefix + number for number in _numbers(body, item)]
    if len(heads) * len(tails) > MAX_HOSTS:
        raise HostlistError(f"{item!r} names more than {MAX_HOSTS:,} hosts")
    return [h + t for h in heads for t in tails]


def _numbers(body: str, item: str) -> list[str]:
    out: list[str] = []
    for part in body.split(","):
        m = _RANGE.fullmatch(part.strip())
        if not m:
            raise HostlistError(f"bad range {part!r} in {item!r}")
        lo_text, hi_text = m.group(1), m.group(2)
        lo = int(lo_text)
        hi = lo if hi_text is None else int(hi_text)
        if hi < lo:
            raise HostlistError(f"range {part!r} in {item!r} runs backwards")
        if hi - lo >= MAX_HOSTS:
            raise HostlistError(f"{item!r} names more than {MAX_HOSTS:,} hosts")
        width = len(lo_text)  # Slurm pads to the width of the lower bound as written
        out += [str(n).zfill(width) for n in range(lo, hi + 1)]
    return out
