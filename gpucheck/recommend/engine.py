"""The entry point of the decision: `recommend(snapshot_or_machine)` (pure; no I/O).

The work is split along its seams: `evaluate` judges one build against the machine,
`installed` judges the installed build, `commands` writes the pip/uv/conda lines, `decide`
chooses, `fallbacks` answers when nothing fits; `model` holds the typed results.
"""

from __future__ import annotations

import re
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from gpucheck.compat import CompatTable, load_table
from gpucheck.recommend.decide import decide
from gpucheck.recommend.evaluate import PLATFORM_WORDS, driver_os
from gpucheck.recommend.machine import Machine
from gpucheck.recommend.model import ACTIONS, Action, Recommendation

__all__ = [
    "ACTIONS",
    "PLATFORM_WORDS",
    "Action",
    "Recommendation",
    "driver_os",
    "parse_torch_spec",
    "recommend",
]


def parse_torch_spec(spec: str | None) -> SpecifierSet | None:
    """'2.5.*' -> ==2.5.*, '<2.10' -> <2.10, '2.13.0' -> ==2.13.0; ValueError when unreadable."""
    if spec is None or not spec.strip():
        return None
    text = spec.strip()
    if text.lower().startswith("torch"):
        text = text[5:].strip()
    parts = []
    for part in text.split(","):
        part = part.strip()
        if re.match(r"^\d", part):
            part = "==" + part
        parts.append(part)
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier:
        raise ValueError(f"not a version constraint: {spec!r} (try '2.5.*' or '<2.10')") from None


def recommend(
    snapshot_or_machine: Any,
    *,
    table: CompatTable | None = None,
    torch_spec: str | None = None,
) -> Recommendation:
    """The torch build for a Snapshot or a Machine. Pure: reads only its arguments and the table.

    Raises ValueError for an unreadable `torch_spec`.
    """
    table = table or load_table()
    if isinstance(snapshot_or_machine, Machine):
        machine = snapshot_or_machine
    else:
        machine = Machine.from_snapshot(snapshot_or_machine, table)
    return decide(table, machine, parse_torch_spec(torch_spec))
