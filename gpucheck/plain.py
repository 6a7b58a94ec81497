"""The one serialisation path: frozen dataclasses and str Enums to plain JSON data.

Every report dataclass (Snapshot, Finding, BenchResult, Recommendation, the Report document)
is written with `to_plain`, and `gpucheck.schema` derives the JSON Schema from the same
dataclasses, so the contract cannot drift from the code.

The pattern for a closed set of words (a status, an action, a level):

    class BenchStatus(StrEnum):
        OK = "ok"
        CRASH = "crash"

    @dataclass(frozen=True)
    class BenchResult:
        status: BenchStatus

`to_plain` writes the value ("ok"), the schema lists the values, and nothing else may repeat
them: derive a tuple with `values(BenchStatus)` where one is needed.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class StrEnum(str, enum.Enum):
    """A str Enum that prints as its value (enum.StrEnum is Python 3.11+)."""

    def __str__(self) -> str:
        return str(self.value)


def values(kind: type[enum.Enum]) -> tuple[str, ...]:
    """The values of a str Enum, in declaration order."""
    return tuple(str(member.value) for member in kind)


def to_plain(value: Any) -> Any:
    """Dataclasses to dicts (field order), tuples to lists, Enums to their values, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value
