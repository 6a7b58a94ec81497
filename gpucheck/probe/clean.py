"""Probed text made safe once, at the probe: no control characters reach a report.

A GPU name, a driver string or a child's stderr comes from outside gpucheck; a byte such as
ESC (`\\x1b`) or NUL would colour or corrupt a terminal and make JUnit XML invalid (XML 1.0
allows no C0 control but tab, newline and carriage return). Such characters are written as
visible escapes (`\\x1b`) in every string of the snapshot, once, where it is built.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar

T = TypeVar("T")
# C0 controls but tab and newline, DEL, and the C1 controls (which some terminals obey).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clean(value: T) -> T:
    """`value` with every string in it cleaned (frozen dataclasses rebuilt, not mutated)."""
    return _clean(value)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value) if _CONTROL.search(value) else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = _clean(old)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    if isinstance(value, tuple):
        items = tuple(_clean(v) for v in value)
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        out = {_clean(k): _clean(v) for k, v in value.items()}
        same = all(k in value and value[k] is v for k, v in out.items()) and len(out) == len(value)
        return value if same else out
    return value
