"""JSON Schema of the fleet report (`gpucheck fleet --json`): docs/schema/fleet.schema.json.

`python -m gpucheck.fleet.schema docs/schema` rewrites it; a test checks that the published
copy matches and that real fleet reports validate against it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from gpucheck.fleet.aggregate import FLEET_SCHEMA_VERSION
from gpucheck.fleet.summary import DRIFT_FIELDS

_STR = {"type": "string"}
_NULL_STR = {"type": ["string", "null"]}
_STATUS = {"enum": ["PASS", "WARN", "FAIL"]}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": required or list(props), "properties": props}


NODE = _obj(
    {
        "name": _STR,
        "status": _STATUS,
        "verdict": _STATUS,
        "source": _STR,
        "identity": _obj(
            {"hostname": _NULL_STR, "slurm_node_name": _NULL_STR, "machine_id": _NULL_STR}
        ),
        "gpus": {"type": "integer", "minimum": 0},
        "config": _obj({k: _NULL_STR for k in DRIFT_FIELDS}),
        "errors": {"type": "array", "items": _STR},
        "warnings": {"type": "array", "items": _STR},
        "samples_per_s": {"type": ["number", "null"]},
        "expect_mismatches": {"type": "array", "items": _STR},
        "problem": _NULL_STR,
        "created": _NULL_STR,
    }
)

DRIFT = _obj(
    {
        "field": {"enum": list(DRIFT_FIELDS)},
        "majority": _NULL_STR,
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
        "nodes": {"type": "array", "items": _obj({"node": _STR, "value": _STR})},
    }
)

OUTLIER = _obj(
    {
        "node": _STR,
        "gpu": _STR,
        "model": _STR,
        "metric": {"enum": ["samples_per_s", "node_samples_per_s", "matmul_tflops"]},
        "value": {"type": "number"},
        "median": {"type": "number"},
        "ratio": {"type": "number"},
    }
)

_COUNT = {"type": "integer", "minimum": 0}


def fleet_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gpucheck.invalid/schema/fleet.schema.json",
        "title": f"gpucheck fleet report, schema_version {FLEET_SCHEMA_VERSION}",
        **_obj(
            {
                "schema_version": {"const": FLEET_SCHEMA_VERSION},
                "tool": _obj({"name": {"const": "gpucheck"}, "version": _STR}),
                "command": {"const": "fleet"},
                "verdict": _STATUS,
                "exit_code": {"enum": [0, 1]},
                "strict": {"type": "boolean"},
                "summary": _obj(
                    {
                        "nodes": _COUNT,
                        "pass": _COUNT,
                        "warn": _COUNT,
                        "fail": _COUNT,
                        "unreadable": _COUNT,
                        "missing": _COUNT,
                        "expected": {"type": ["integer", "null"], "minimum": 0},
                    }
                ),
                "nodes": {"type": "array", "items": NODE},
                "unreadable": {
                    "type": "array",
                    "items": _obj({"source": _STR, "name": _STR, "reason": _STR}),
                },
                "missing": {"type": "array", "items": _STR},
                "extra": {"type": "array", "items": _STR},
                "drift": {"type": "array", "items": DRIFT},
                "expect": {"type": ["object", "null"]},
                "outliers": {"type": "array", "items": OUTLIER},
                "notes": {"type": "array", "items": _STR},
            }
        ),
    }


def write(folder: str) -> None:
    from gpucheck.io import write_atomic

    write_atomic(f"{folder}/fleet.schema.json", json.dumps(fleet_schema(), indent=2) + "\n")


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else "docs/schema")
