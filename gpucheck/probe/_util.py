"""Small I/O helpers shared by the probes: rooted file reads, PATH lookups, bounded commands."""

from __future__ import annotations

import os
from collections.abc import Mapping

from gpucheck.proc import Completed, run


def rooted(root: str, path: str) -> str:
    """`path` (absolute) under `root`, so tests can point the probes at a fake tree."""
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


def read_text(path: str, limit: int = 1 << 20) -> str | None:
    """The file's text (first `limit` bytes), or None when it is absent or unreadable."""
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def which(name: str, env: Mapping[str, str]) -> str | None:
    """Like shutil.which, but over env["PATH"] rather than os.environ."""
    for folder in env.get("PATH", "").split(os.pathsep):
        if not folder:
            continue
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


# The one command runner lives in gpucheck.proc; these names keep the probes' imports short.
CommandResult = Completed
run_command = run
