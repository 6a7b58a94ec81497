"""The Makefile's set-up and scripts/onboard.sh, run for real with stand-in interpreters/wheels.

The Makefile test puts a logging stand-in where the venv's python goes, so that the exact
command lines make runs are recorded without installing anything.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or shutil.which("make") is None, reason="POSIX make and sh"
)

LOGGING_PYTHON = """#!/bin/sh
for a in "$@"; do printf '%s\\n' "$a"; done >> "$(dirname "$0")/../calls"
echo "--" >> "$(dirname "$0")/../calls"
"""


def _venv_stub(venv: Path) -> None:
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    py = venv / "bin" / "python"
    py.write_text(LOGGING_PYTHON)
    py.chmod(py.stat().st_mode | stat.S_IEXEC)


def _make(venv: Path, *args: str) -> list[list[str]]:
    """Run make with the stand-in venv; the argv of every call of its python."""
    calls = venv / "calls"
    calls.unlink(missing_ok=True)
    proc = subprocess.run(
        ["make", "-s", "-C", str(ROOT), f"VENV={venv}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    text = calls.read_text() if calls.exists() else ""
    return [c.strip("\n").split("\n") for c in text.split("--\n") if c.strip()]


def _torch_installs(calls: list[list[str]]) -> list[list[str]]:
    return [c[3:] for c in calls if c[:3] == ["-m", "pip", "install"] and "-e" not in c]


def test_readme_make_run_torch_with_index_url_is_split_into_words(tmp_path):
    readme = (ROOT / "README.md").read_text()
    line = re.search(r"^make run TORCH=.*?(?=\s+#|$)", readme, re.M).group(0)
    torch_value = shlex.split(line)[2].split("=", 1)[1]
    venv = tmp_path / "venv"
    _venv_stub(venv)
    calls = _make(venv, *shlex.split(line)[1:])
    installs = _torch_installs(calls)
    # one argument per word, as pip needs them (not one "requirement" with spaces in it)
    assert ["-q", *torch_value.split()] in installs, installs
    assert calls[-1] == ["-m", "gpucheck"]


def test_changing_torch_reinstalls_and_an_unchanged_one_does_not(tmp_path):
    venv = tmp_path / "venv"
    _venv_stub(venv)
    first = _torch_installs(_make(venv, "run", "TORCH=torch==2.13.0"))
    assert first[-1] == ["-q", "torch==2.13.0"]
    assert _torch_installs(_make(venv, "run", "TORCH=torch==2.13.0")) == []  # stamp is current
    again = _torch_installs(_make(venv, "run", "TORCH=torch==2.14.1 --index-url file:///x"))
    assert again[-1] == ["-q", "torch==2.14.1", "--index-url", "file:///x"]
    # a specifier with shell characters reaches pip as written (no redirection)
    odd = _torch_installs(_make(venv, "run", "TORCH=torch>=2.0,<3"))
    assert odd[-1] == ["-q", "torch>=2.0,<3"]
    assert not (ROOT / "=2.0,<3").exists()


def test_make_test_runs_pytest_in_the_venv(tmp_path):
    venv = tmp_path / "venv"
    _venv_stub(venv)
    calls = _make(venv, "test", "ARGS=-x")
    assert calls[-1] == ["-m", "pytest", "-q", "-x"]


# --- scripts/onboard.sh -------------------------------------------------------------------------


def _onboard(tmp_path: Path, wheels: Path, snapshot: str, *, spec: str, yes: bool):
    env = dict(os.environ)
    env.update(
        PYTHON=sys.executable,
        GPUCHECK_SPEC=spec,
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheels),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "GPUCHECK_YES"):
        env.pop(var, None)
    if yes:
        env["GPUCHECK_YES"] = "1"
    venv = tmp_path / "onboard-env"
    argv = ["sh", str(ROOT / "scripts" / "onboard.sh"), str(venv), "--"]
    argv += ["--from-snapshot", snapshot, "--no-index", "--find-links", str(wheels)]
    proc = subprocess.run(
        argv,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    return proc, venv


@pytest.fixture(scope="module")
def onboard_wheels(tmp_path_factory) -> Path:
    from test_bootstrap import FAKE_MAIN, build_wheels, make_wheel

    folder = build_wheels(tmp_path_factory.mktemp("onboard-wheels"))
    # onboard.sh runs `<venv>/bin/python -m gpucheck bootstrap`: hand that to the real gpucheck
    # (of this checkout, in the test's interpreter); the check inside the venv stays the fake.
    dispatch = (
        "import os, sys\n"
        "if sys.argv[1:2] == ['bootstrap']:\n"
        f"    os.execv({sys.executable!r}, [{sys.executable!r}, '-m', 'gpucheck', *sys.argv[1:]])\n"
    )
    main = {"gpucheck/__init__.py": "", "gpucheck/__main__.py": dispatch + FAKE_MAIN}
    make_wheel(folder, "gpu-path-check", "0.0.1", main)
    return folder


@pytest.fixture
def snapshot(tmp_path) -> str:
    from test_bootstrap import write_snapshot

    return write_snapshot(tmp_path / "snap.json")


@pytest.mark.slow
def test_onboard_cancelled_removes_the_venv_it_created(tmp_path, onboard_wheels, snapshot):
    proc, venv = _onboard(tmp_path, onboard_wheels, snapshot, spec="gpu-path-check", yes=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "nothing was changed" not in out
    assert "removed" in out and not venv.exists()


@pytest.mark.slow
def test_onboard_with_a_versioned_spec(tmp_path, onboard_wheels, snapshot):
    # "name==V" becomes "name[bench]==V", a valid requirement (not "name==V[bench]")
    proc, venv = _onboard(
        tmp_path, onboard_wheels, snapshot, spec="gpu-path-check==0.0.1", yes=True
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "gpu-path-check[bench]==0.0.1" in out and "verdict inside" in out
    assert venv.is_dir()
