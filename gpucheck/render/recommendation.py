"""The one human rendering of a Recommendation (the `check` report and `gpucheck recommend`).

Short: what to do in one line, the commands, then the reasons and the warnings. A command is
never wrapped: pasting the first half of a wrapped pip line installs PyPI's build, the very
mistake this tool exists to prevent. Commands go out with soft_wrap (the terminal may fold
them visually; the text stays one line), prose wraps normally.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.text import Text

from gpucheck.recommend.model import Action, Recommendation

# Where a command starts inside a sentence ("... still works: pip install ...").
_COMMAND = re.compile(r"\b(?:uv pip install|pip install|conda install)\b|https?://")


def headline(rec: Recommendation) -> str:
    """What to do, in one line."""
    action = Action(rec.action)
    if action is Action.NONE:
        what = f"torch {rec.torch}" if rec.torch else "the installed torch"
        return f"Nothing to do: {what} already fits this machine."
    if action is Action.UNSUPPORTED:
        return "No PyTorch build fits this machine."
    if rec.torch is None:  # e.g. Jetson: NVIDIA's own builds, named in the reasons
        return "Install PyTorch as described below:"
    # The local tag only when the command names it by index; PyPI's wheel is just "torch V".
    build = rec.build if rec.index_url else rec.torch
    if action is Action.UPGRADE_DRIVER:
        need = rec.driver_full_feature or rec.driver_required
        return f"Upgrade the NVIDIA driver first (>= {need}), then install torch {build}:"
    if action is Action.CHANGE_PYTHON:
        return f"Use Python {rec.python_required}, then install torch {build}:"
    return f"Install torch {build}:"


def print_recommendation(rec: Recommendation, console: Console, *, indent: str = "  ") -> None:
    """Print `rec` on `console`; commands unwrapped; "nothing to do" is one line (the reasons
    and warnings stay in the JSON)."""
    console.print(Text(headline(rec), style="bold"))
    action = Action(rec.action)
    if action is Action.NONE:
        return
    if action is not Action.UNSUPPORTED:
        for key, value in (("pip", rec.pip), ("uv", rec.uv), ("conda", rec.conda)):
            if value:
                _command(console, indent, f"{key:6} ", value)
    for reason in rec.reasons:
        _sentence(console, indent + "- ", reason, "dim")
    for warning in rec.warnings:
        _sentence(console, indent + "! ", warning, "yellow")


def _command(console: Console, indent: str, label: str, command: str) -> None:
    line = Text(indent).append(label, style="bold").append(command, style="cyan")
    console.print(line, soft_wrap=True)


def _sentence(console: Console, prefix: str, text: str, style: str) -> None:
    """Prose wraps; a command inside it goes on its own unwrapped line."""
    m = _COMMAND.search(text)
    if m is None:
        _hanging(console, prefix, text, style)
        return
    prose = text[: m.start()].rstrip(" :(")
    command = text[m.start() :]
    if command.endswith(")") and "(" not in command:
        command = command[:-1]
    _hanging(console, prefix, prose + ":", style)
    _command(console, " " * (len(prefix) + 2), "", command)


def _hanging(console: Console, prefix: str, text: str, style: str) -> None:
    """`prefix` then `text`, wrapped lines aligned under the text, not under the margin."""
    width = max(20, console.width - len(prefix))
    for i, line in enumerate(Text(text, style=style).wrap(console, width)):
        line.rstrip()
        lead = Text(prefix if i == 0 else " " * len(prefix), style=style)
        console.print(lead + line, soft_wrap=True)
