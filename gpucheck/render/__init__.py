"""Renderers: Report -> text. They never probe; they only read the report."""

from gpucheck.render.console import render_console
from gpucheck.render.json_ import render_json
from gpucheck.render.junit import render_junit
from gpucheck.render.markdown import render_markdown

__all__ = ["render_console", "render_json", "render_junit", "render_markdown"]
