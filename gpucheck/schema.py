"""JSON Schemas for the snapshot and the report, derived from the dataclasses.

The published copies live in docs/schema/; `python -m gpucheck.schema docs/schema` rewrites
them and a test checks that they match, so the schema can never drift from the code.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from typing import Any

from gpucheck.errors import EXIT_FINDINGS, EXIT_OK
from gpucheck.report import REPORT_SCHEMA_VERSION, ReportDocument
from gpucheck.snapshot import SCHEMA_VERSION, SHAPES, Snapshot

BASE = "https://gpucheck.invalid/schema"  # an identifier, not a place to fetch from
DRAFT = "https://json-schema.org/draft/2020-12/schema"


class _Builder:
    """Collects one `$defs` entry per dataclass, so that every `$ref` stays inside the file.

    `all_required`: every field is required (a report is written with all of them); without
    it, only fields without a default (a snapshot may omit the rest when it is read).
    """

    def __init__(self, *, all_required: bool) -> None:
        self.defs: dict[str, Any] = {}
        self.all_required = all_required
        self._names: dict[str, Any] | None = None

    def hints(self, cls: type) -> dict[str, Any]:
        if self._names is None:  # the report's types named only under TYPE_CHECKING
            from gpucheck.bench import BenchResult
            from gpucheck.recommend.model import Recommendation

            self._names = {"BenchResult": BenchResult, "Recommendation": Recommendation}
        return typing.get_type_hints(cls, localns=self._names)

    def of(self, tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
            return {"anyOf": [self.of(inner), {"type": "null"}]}
        if dataclasses.is_dataclass(tp):
            self._define(tp)
            return {"$ref": f"#/$defs/{tp.__name__}"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):  # the values, from the Enum only
            return {"enum": [m.value for m in tp]}
        if origin in (tuple, list):
            return {"type": "array", "items": self.of(typing.get_args(tp)[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(typing.get_args(tp)[1])}
        if tp is Any:
            return {}
        return {"type": {int: "integer", float: "number", str: "string", bool: "boolean"}[tp]}

    def _define(self, cls: type) -> None:
        name = cls.__name__
        if name in self.defs:
            return
        self.defs[name] = {}  # reserve first: guards recursion
        hints = self.hints(cls)
        fields = dataclasses.fields(cls)
        properties = {}
        for f in fields:
            properties[f.name] = self.of(hints[f.name])
            if f.name in SHAPES:  # a text field with a fixed shape, checked on load
                properties[f.name] = _with_pattern(properties[f.name], SHAPES[f.name][0])
        self.defs[name] = {
            "type": "object",
            "properties": properties,
            "required": [
                f.name
                for f in fields
                if self.all_required
                or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            ],
        }


def _with_pattern(schema: dict[str, Any], pattern: str) -> dict[str, Any]:
    if schema.get("type") == "string":
        return {**schema, "pattern": pattern}
    if "anyOf" in schema:
        return {"anyOf": [_with_pattern(s, pattern) for s in schema["anyOf"]]}
    return schema


def snapshot_schema() -> dict[str, Any]:
    build = _Builder(all_required=False)
    root = build.of(Snapshot)
    build.defs["Snapshot"]["properties"]["schema_version"] = {
        "type": "integer",
        "minimum": 1,
        "maximum": SCHEMA_VERSION,
    }
    return {
        "$schema": DRAFT,
        "$id": f"{BASE}/snapshot.schema.json",
        "title": f"gpucheck snapshot, schema_version {SCHEMA_VERSION}",
        **root,
        "$defs": build.defs,
    }


def report_schema() -> dict[str, Any]:
    """The report: self-contained (the snapshot's definitions are inside it, no outside $ref)."""
    build = _Builder(all_required=True)
    root = build.of(ReportDocument)
    props = build.defs["ReportDocument"]["properties"]
    props["schema_version"] = {"const": REPORT_SCHEMA_VERSION}
    props["exit_code"] = {"enum": [EXIT_OK, EXIT_FINDINGS]}
    build.defs["Finding"]["properties"]["id"] = {"type": "string", "pattern": "^GC[0-9]{3}$"}
    for count in build.defs["Summary"]["properties"].values():
        count["minimum"] = 0
    return {
        "$schema": DRAFT,
        "$id": f"{BASE}/report.schema.json",
        "title": f"gpucheck report, schema_version {REPORT_SCHEMA_VERSION}",
        **root,
        "$defs": build.defs,
    }


def write_all(folder: str) -> None:
    from gpucheck.io import write_atomic

    for name, schema in (("snapshot", snapshot_schema()), ("report", report_schema())):
        write_atomic(f"{folder}/{name}.schema.json", json.dumps(schema, indent=2) + "\n")


if __name__ == "__main__":
    write_all(sys.argv[1] if len(sys.argv) > 1 else "docs/schema")
