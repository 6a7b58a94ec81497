"""JSON Schemas for the snapshot and the report, derived from the dataclasses.

The published copies live in docs/schema/; `python -m gpucheck.schema docs/schema` rewrites
them and a test checks that they match, so the schema can never drift from the code.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from typing import Any

from gpucheck.report import REPORT_SCHEMA_VERSION
from gpucheck.snapshot import SCHEMA_VERSION, Snapshot, _hints

BASE = "https://gpucheck.invalid/schema"  # an identifier, not a place to fetch from


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [_type_schema(inner, defs), {"type": "null"}]}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # reserve first: guards recursion
            hints = _hints(tp)
            fields = dataclasses.fields(tp)
            defs[name] = {
                "type": "object",
                "properties": {f.name: _type_schema(hints[f.name], defs) for f in fields},
                "required": [
                    f.name
                    for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                ],
            }
        return {"$ref": f"#/$defs/{name}"}
    if origin is tuple:
        return {"type": "array", "items": _type_schema(typing.get_args(tp)[0], defs)}
    if origin is dict:
        return {
            "type": "object",
            "additionalProperties": _type_schema(typing.get_args(tp)[1], defs),
        }
    return {"type": {int: "integer", float: "number", str: "string", bool: "boolean"}[tp]}


def snapshot_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = _type_schema(Snapshot, defs)
    defs["Snapshot"]["properties"]["schema_version"] = {
        "type": "integer",
        "minimum": 1,
        "maximum": SCHEMA_VERSION,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{BASE}/snapshot.schema.json",
        "title": f"gpucheck snapshot, schema_version {SCHEMA_VERSION}",
        **root,
        "$defs": defs,
    }


_STR_LIST = {"type": "array", "items": {"type": "string"}}
_NULL_STR = {"type": ["string", "null"]}

FINDING = {
    "type": "object",
    "required": ["id", "severity", "title", "evidence", "fix", "gpu"],
    "properties": {
        "id": {"type": "string", "pattern": "^GC[0-9]{3}$"},
        "severity": {"enum": ["ok", "info", "warn", "error"]},
        "title": {"type": "string"},
        "evidence": _STR_LIST,
        "fix": _NULL_STR,
        "gpu": {"type": ["integer", "null"]},
    },
}

RECOMMENDATION = {
    "type": "object",
    "required": [
        "variant",
        "torch",
        "index_url",
        "pip",
        "uv",
        "conda",
        "action",
        "reasons",
        "warnings",
    ],
    "properties": {
        "variant": _NULL_STR,
        "torch": _NULL_STR,
        "index_url": _NULL_STR,
        "pip": _NULL_STR,
        "uv": _NULL_STR,
        "conda": _NULL_STR,
        "action": {"enum": ["none", "install", "upgrade-driver", "change-python", "unsupported"]},
        "reasons": _STR_LIST,
        "warnings": _STR_LIST,
    },
}

BENCH = {
    "type": "object",
    "required": ["device", "preset", "status", "duration_s", "error", "result"],
    "properties": {
        "device": {"type": "string"},
        "preset": _NULL_STR,
        "status": {"enum": ["ok", "gate-failed", "nan-loss", "oom", "timeout", "crash", "skipped"]},
        "duration_s": {"type": ["number", "null"]},
        "error": _NULL_STR,
        "result": {"type": ["object", "null"]},
    },
}


def report_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{BASE}/report.schema.json",
        "title": f"gpucheck report, schema_version {REPORT_SCHEMA_VERSION}",
        "type": "object",
        "required": [
            "schema_version",
            "tool",
            "command",
            "verdict",
            "exit_code",
            "summary",
            "findings",
            "recommendation",
            "bench",
            "snapshot",
        ],
        "properties": {
            "schema_version": {"const": REPORT_SCHEMA_VERSION},
            "tool": {"type": "object", "required": ["name", "version"]},
            "command": {"enum": ["check", "probe", "bench"]},
            "verdict": {"enum": ["PASS", "WARN", "FAIL"]},
            "exit_code": {"enum": [0, 1]},
            "strict": {"type": "boolean"},
            "summary": {
                "type": "object",
                "required": ["error", "warn", "info"],
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
            "findings": {"type": "array", "items": FINDING},
            "recommendation": {"anyOf": [RECOMMENDATION, {"type": "null"}]},
            "bench": {"anyOf": [{"type": "array", "items": BENCH}, {"type": "null"}]},
            "notes": _STR_LIST,
            "snapshot": {"$ref": "snapshot.schema.json"},
        },
    }


def write_all(folder: str) -> None:
    from gpucheck.io import write_atomic

    for name, schema in (("snapshot", snapshot_schema()), ("report", report_schema())):
        write_atomic(f"{folder}/{name}.schema.json", json.dumps(schema, indent=2) + "\n")


if __name__ == "__main__":
    write_all(sys.argv[1] if len(sys.argv) > 1 else "docs/schema")
