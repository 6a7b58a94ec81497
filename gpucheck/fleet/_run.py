"""Run a program with a timeout through the project's one command runner (gpucheck.proc)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpucheck import proc


@dataclass(frozen=True)
class Ran:
    returncode: int | None  # None: it did not start or did not finish in time
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # why it did not start or finish, one line


def run(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> Ran:
    """`argv` in its own process group, killed with its children at `timeout`."""
    c = proc.run(argv, timeout=timeout, env=env)
    return Ran(c.returncode, c.stdout, c.stderr, c.error)
