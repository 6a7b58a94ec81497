"""The one command runner, and what a signal does to gpucheck and its children."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from fakes.machine import fake_torch

from gpucheck import proc


def _gone(pid: int) -> bool:
    """Dead, or a zombie nobody reaped yet (PID 1 in a container may not reap)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_for(path: pathlib.Path, seconds: float = 20.0) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_run_captures_and_returns_a_frozen_result():
    done = proc.run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], timeout=20)
    assert (done.returncode, done.stdout.strip(), done.timed_out, done.error) == (
        3,
        "out",
        False,
        None,
    )
    assert done.seconds > 0 and not done.ok
    with pytest.raises(AttributeError):
        done.returncode = 0  # type: ignore[misc]


def test_missing_program_is_data_not_an_exception(tmp_path):
    done = proc.run([str(tmp_path / "nope")], timeout=5)
    assert done.returncode is None and "could not run" in done.error


def test_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, time\n"
        "p = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    done = proc.run([sys.executable, "-c", code], timeout=1.5)
    assert time.monotonic() - start < 1.5 + proc.REAP_S + 1
    assert done.timed_out and done.returncode is None and "timed out" in done.error
    time.sleep(0.2)
    assert _gone(int(pidfile.read_text()))


def test_output_is_capped_head_of_stdout_tail_of_stderr():
    code = "import sys\nsys.stdout.write('a' * 300_000 + 'END')\nsys.stderr.write('b' * 300_000 + 'LAST')\n"
    done = proc.run([sys.executable, "-c", code], timeout=20, stdout_cap=1000, stderr_cap=100)
    assert done.stdout == "a" * 1000
    assert len(done.stderr) == 100 and done.stderr.endswith("LAST")


def test_exit_code_is_128_plus_the_signal():
    assert proc.exit_code(proc.Interrupted(signal.SIGTERM)) == 143
    assert proc.exit_code(proc.Interrupted(signal.SIGHUP)) == 129
    assert proc.exit_code(KeyboardInterrupt()) == 130


HANGING_TORCH = """
import os, subprocess, time
p = subprocess.Popen(["sleep", "120"])
open({pidfile!r}, "w").write(f"{{os.getpid()}} {{p.pid}}")
time.sleep(120)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_ends_the_children_and_exits_128_plus_signal(tmp_path, signum):
    """`gpucheck check` killed while its torch child hangs leaves no child behind."""
    pidfile = tmp_path / "child.pids"
    site = fake_torch(tmp_path / "site", HANGING_TORCH.format(pidfile=str(pidfile)))
    out = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([site, str(ROOT)]))
    main = subprocess.Popen(
        [sys.executable, "-m", "gpucheck", "check", "--no-bench", "--json", str(out), "-q"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # so that a failing test can still clean up everything
    )
    try:
        torch_child, grandchild = map(int, _wait_for(pidfile).split())
        main.send_signal(signum)
        _out, err = main.communicate(timeout=20)
        assert main.returncode == 128 + signum, err
        assert b"interrupted" in err and b"Traceback" not in err
        time.sleep(0.3)
        assert _gone(torch_child) and _gone(grandchild)
        assert not out.exists()  # nothing partial written
        assert [p for p in os.listdir(tmp_path) if p.startswith(".gpucheck-")] == []
    finally:
        try:
            os.killpg(main.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        main.wait()


def test_sigterm_ends_python_m_finetune_with_143(tmp_path):
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "finetune", "--preset", "tiny", "--device", "cpu"]
    child = subprocess.Popen(
        [*argv, "--json", str(out), "--quiet", "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(3)  # importing torch, or training: either way it must end the same
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=30)
        assert child.returncode == 143, err
        assert b"Traceback" not in err
        if out.exists():  # only ever a whole document, saying why
            assert json.loads(out.read_text())["status"] == "interrupted"
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()


def test_every_program_is_run_through_proc():
    """One runner: nothing in the package imports subprocess except gpucheck/proc.py."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("gpucheck", "finetune")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "proc.py"
        and re.search(r"^\s*(import|from) subprocess\b", path.read_text(), re.M)
    ]
    assert offenders == []


def test_signal_while_a_child_starts_is_deferred_then_ends_it():
    proc._STARTING.append(None)  # as if Popen were running when the signal came
    try:
        proc._on_signal(signal.SIGTERM, None)  # deferred: no exception yet
    finally:
        proc._STARTING.pop()
    started = []
    real_start = proc.Child._start

    def spy(self, *args):
        real_start(self, *args)
        started.append(self.proc)

    try:
        proc.Child._start = spy
        with pytest.raises(proc.Interrupted) as info:
            proc.Child(["sleep", "30"], timeout=30)
    finally:
        proc.Child._start = real_start
    assert info.value.signum == signal.SIGTERM and proc._LIVE == {}
    assert started[0].wait(timeout=5) == -signal.SIGKILL  # the new child was ended too


def test_children_start_with_the_signal_mask_of_their_parent():
    """Nothing is left blocked in a child (a blocked SIGTERM would outlive a cancel)."""
    ours = [
        ln for ln in pathlib.Path("/proc/self/status").read_text().splitlines() if "SigBlk" in ln
    ]
    done = proc.run(["grep", "SigBlk", "/proc/self/status"], timeout=10)
    assert done.stdout.split() == ours[0].split()
