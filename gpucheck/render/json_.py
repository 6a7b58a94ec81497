"""The JSON report: the contract for machines (docs/schema/report.schema.json)."""

from __future__ import annotations

import json

from gpucheck.report import Report


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"
