"""Small I/O helpers shared by the probes: rooted file reads, PATH lookups, bounded commands."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


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


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: it did not run to the end (missing, timed out)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # why it did not run or finish


def run_command(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> CommandResult:
    """Run argv (no shell) with a timeout; kill its whole process group when it runs over."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # its own group, so a timeout kills its children too
        )
    except OSError as exc:
        return CommandResult(None, error=f"could not run {argv[0]}: {exc.strerror or exc}")
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return CommandResult(None, error=f"timed out after {timeout:g} s")
    return CommandResult(
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


def kill_group(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """SIGKILL the process group of `proc` (started with start_new_session) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        # A grandchild that left the group may still hold the pipes open: do not wait forever.
        return proc.communicate(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        return b"", b""
