"""The Python interpreter whose packages (torch, nvidia-* wheels) are inspected.

For the running interpreter this is free; for another one (`--python`) it costs one short
child process that prints its version, prefixes and sys.path.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from gpucheck.probe._util import run_command

# Printed by the inspected interpreter; keep it Python-2-proof enough to fail with JSON-free
# output rather than a hang on a very old interpreter.
_SCRIPT = (
    "import json, platform, sys;"
    "print(json.dumps({'version': platform.python_version(),"
    " 'implementation': platform.python_implementation(),"
    " 'executable': sys.executable, 'prefix': sys.prefix,"
    " 'base_prefix': getattr(sys, 'base_prefix', sys.prefix), 'path': sys.path}))"
)


@dataclass(frozen=True)
class PyEnv:
    executable: str
    version: str | None = None
    implementation: str | None = None
    prefix: str | None = None
    base_prefix: str | None = None
    path: tuple[str, ...] = ()  # its sys.path
    error: str | None = None

    def site_dirs(self) -> tuple[str, ...]:
        """The folders of its sys.path that hold installed distributions."""
        return tuple(
            p
            for p in self.path
            if p and os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages")
        )


def inspect_python(python: str | None, env: Mapping[str, str], timeout: float = 10.0) -> PyEnv:
    """Describe `python` (default: this interpreter)."""
    # Compare paths, not their real targets: a venv's python is a symlink to its base python.
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        return PyEnv(
            executable=sys.executable,
            version=platform.python_version(),
            implementation=platform.python_implementation(),
            prefix=sys.prefix,
            base_prefix=sys.base_prefix,
            path=tuple(sys.path),
        )
    result = run_command([python, "-c", _SCRIPT], timeout=timeout, env=env)
    if result.returncode != 0:
        why = result.error or (result.stderr.strip().splitlines() or ["no output"])[-1]
        return PyEnv(executable=python, error=f"could not run {python}: {why}")
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
        return PyEnv(
            executable=str(data["executable"] or python),
            version=str(data["version"]),
            implementation=str(data["implementation"]),
            prefix=str(data["prefix"]),
            base_prefix=str(data["base_prefix"]),
            path=tuple(str(p) for p in data["path"]),
        )
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return PyEnv(executable=python, error=f"unexpected output from {python}: {exc}")
