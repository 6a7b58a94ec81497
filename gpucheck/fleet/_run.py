"""Run a program with a timeout through the project's one command runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Ran:
    returncode: int | None  # None: it did not start or did not finish in time
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # why it did not start or finish, one line


def run(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> Ran:
    try:
        from gpucheck.proc import run as proc_run
    except ImportError:  # pragma: no cover - older tree without gpucheck.proc
        from gpucheck.probe._util import run_command

        r = run_command(argv, timeout=timeout, env=env)
        return Ran(r.returncode, r.stdout, r.stderr, r.error)
    c = proc_run(argv, timeout=timeout, env=env)
    return Ran(c.returncode, c.stdout, c.stderr, c.error)
