"""Renderers: Report -> text. They never probe; they only read the report.

The console renderer (`gpucheck.render.console`) is imported only when it is used: rich costs
start-up time that `--json` runs do not need.
"""

from gpucheck.render.json_ import render_json
from gpucheck.render.junit import render_junit
from gpucheck.render.markdown import render_markdown

__all__ = ["render_json", "render_junit", "render_markdown"]
