"""The one way gpucheck runs another program: a timeout, its own process group, capped output.

Every child (nvidia-smi, nvcc, ldconfig, the torch child, the benchmark, pip) starts in a
process group of its own, so that a timeout, Ctrl-C, SIGTERM or SIGHUP ends the child *and*
whatever it started; none is left running with parent 1. Output is read while the child runs
and capped, so a child that prints without end cannot fill memory.

`install_signal_handlers()` turns SIGINT, SIGTERM and SIGHUP into `Interrupted` (a
KeyboardInterrupt), after killing every live child group; `exit_code(exc)` is 128 + the signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

STDOUT_CAP = 16 * 1024 * 1024  # the head of stdout kept (a JSON report, `ldconfig -p`)
STDERR_CAP = 64 * 1024  # the tail of stderr kept: where the error is
REAP_S = 2.0  # after a kill, how long to drain pipes a stray grandchild may still hold

Stream = Literal["capture", "inherit", "devnull"]


@dataclass(frozen=True)
class Completed:
    """How a child ended. `returncode` is None when it did not run to the end."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""  # the last STDERR_CAP bytes
    seconds: float = 0.0
    timed_out: bool = False
    error: str | None = None  # why it did not start or finish, one line

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived; the live child groups are already killed."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


SIGNALS = tuple(
    s
    for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
    if s is not None
)
_STARTING: list[Child] = []  # children between Popen and their registration in _LIVE
_PENDING: list[int] = []  # a signal that came meanwhile, handled right after
_LIVE: dict[int, subprocess.Popen] = {}  # pid -> child whose group is still ours to end


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` (a group leader, see Child)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    except OSError:  # pragma: no cover - not a group leader after all
        proc.kill()


def kill_all() -> None:
    """End every child group still running (on a signal, or on the way out)."""
    for proc in list(_LIVE.values()):
        kill_group(proc)
    _LIVE.clear()


class Child:
    """A child started now and waited for later, so it can run while other work goes on."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdout: Stream = "capture",
        stderr: Stream = "capture",
        stdin_inherit: bool = False,
        stdout_cap: int = STDOUT_CAP,
        stderr_cap: int = STDERR_CAP,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.timeout = timeout
        self.started = time.monotonic()
        self.stdout_cap, self.stderr_cap = stdout_cap, stderr_cap
        self.proc: subprocess.Popen | None = None
        self.start_error: str | None = None
        self.start_exc: OSError | None = None  # why it could not start, for callers' own words
        pipes = {"capture": subprocess.PIPE, "inherit": None, "devnull": subprocess.DEVNULL}
        # A signal between the start and the registration would orphan the child: the handler
        # defers it until the child is registered, then ends it with the others. (Blocking the
        # signals instead would leave them blocked in the child: the mask is inherited.)
        _STARTING.append(self)
        try:
            self._start(stdin_inherit, pipes[stdout], pipes[stderr], env, cwd)
        finally:
            _STARTING.pop()
        if _PENDING and not _STARTING:
            _on_signal(_PENDING.pop(), None)

    def _start(self, stdin_inherit: bool, stdout, stderr, env, cwd) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=None if stdin_inherit else subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # its own group: a timeout or signal ends all of it
            )
        except OSError as exc:
            self.start_exc = exc
            self.start_error = f"could not run {self.argv[0]}: {exc.strerror or exc}"
            return
        _LIVE[self.proc.pid] = self.proc

    def wait(self) -> Completed:
        """Wait for the child within what is left of its timeout; kill its group past it."""
        if self.proc is None:
            return Completed(None, error=self.start_error)
        proc = self.proc
        out, err = bytearray(), bytearray()
        timed_out = False
        try:
            timed_out = not self._pump(out, err, self.started + self.timeout)
            if timed_out:
                kill_group(proc)
                self._pump(out, err, time.monotonic() + REAP_S)
        finally:
            if proc.poll() is None or timed_out:  # interrupted, or over time: end it all
                kill_group(proc)
            _LIVE.pop(proc.pid, None)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            try:
                proc.wait(timeout=REAP_S)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                pass
        seconds = time.monotonic() - self.started
        return Completed(
            None if timed_out else proc.returncode,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
            seconds,
            timed_out,
            f"timed out after {self.timeout:g} s" if timed_out else None,
        )

    def _pump(self, out: bytearray, err: bytearray, deadline: float) -> bool:
        """Read the pipes until the child exits and they close; False when `deadline` passes."""
        proc = self.proc
        assert proc is not None
        sel = selectors.DefaultSelector()
        sinks = {}
        for pipe, sink in ((proc.stdout, out), (proc.stderr, err)):
            if pipe is not None and not pipe.closed:
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, selectors.EVENT_READ)
                sinks[pipe] = sink
        try:
            while sinks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                for key, _ in sel.select(min(left, 0.5)):
                    try:
                        chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    except BlockingIOError:  # woken with nothing to read after all
                        continue
                    if not chunk:
                        sel.unregister(key.fileobj)
                        del sinks[key.fileobj]
                        continue
                    sink = sinks[key.fileobj]
                    sink += chunk
                    if sink is out and len(out) > self.stdout_cap:
                        del out[self.stdout_cap :]  # keep the head: the start of a document
                    elif sink is err and len(err) > self.stderr_cap:
                        del err[: len(err) - self.stderr_cap]  # keep the tail: the error
        finally:
            sel.close()
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True


def last_marked_json(stdout: str, marker: str) -> dict[str, Any] | None:
    """A child's report: the last stdout line that is a JSON object carrying `marker`.

    Our children (the torch child, the node child) print one such line per stage, so whatever
    else a library prints, and however far a hung child got, the newest complete one is read.
    """
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get(marker):
            return data
    return None


def run(argv: Sequence[str], *, timeout: float, **kwargs) -> Completed:
    """Run `argv` (no shell) to the end or to `timeout`; see Child for the options."""
    return Child(argv, timeout=timeout, **kwargs).wait()


# --- signals -----------------------------------------------------------------------------


def _on_signal(signum: int, _frame) -> None:
    if _STARTING:
        _PENDING[:] = [signum]
        return
    kill_all()
    raise Interrupted(signum)


def install_signal_handlers() -> Callable[[], None]:
    """SIGINT, SIGTERM and SIGHUP: end the child groups, then raise Interrupted.

    Call it at the start of a main(); it returns a function that puts the old handlers back.
    A signal ignored at start (nohup) stays ignored.
    """
    old: dict[int, object] = {}
    for signum in SIGNALS:
        try:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue
            signal.signal(signum, _on_signal)
            old[signum] = previous
        except ValueError:  # not the main thread (a worker thread): leave the handlers alone
            break

    def restore() -> None:
        for signum, previous in old.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]

    return restore


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """`install_signal_handlers()` for the length of a `with` block."""
    restore = install_signal_handlers()
    try:
        yield
    finally:
        restore()


def exit_code(exc: BaseException) -> int:
    """128 + the signal that interrupted the run (130 for Ctrl-C); ends any child left."""
    kill_all()
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def signal_name(exc: BaseException) -> str:
    return signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
