"""`gpucheck bootstrap` end to end against a local package folder built here.

The `torch`, `torchvision` and `gpucheck` distributions are throwaway wheels written by hand
with zipfile: nothing is downloaded, and no real torch is installed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gpucheck.cli import main
from gpucheck.snapshot import PythonInfo, Snapshot, System

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
FAKE_MAIN = """\
import json, sys
import torch
ok = torch.__version__ == "2.14.1"
print(json.dumps({"verdict": "PASS" if ok else "FAIL", "exit_code": 0 if ok else 1,
                  "findings": [], "argv": sys.argv[1:]}))
sys.exit(0 if ok else 1)
"""


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    dist = f"{name}-{version}.dist-info"
    files = dict(files)
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, text in files.items():
        digest = (
            base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        )
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    make_wheel(folder, "torch", "2.14.1", {"torch/__init__.py": '__version__ = "2.14.1"\n'})
    make_wheel(
        folder, "torchvision", "0.29.1", {"torchvision/__init__.py": '__version__ = "0.29.1"\n'}
    )
    make_wheel(
        folder, "gpucheck", "0.0.1", {"gpucheck/__init__.py": "", "gpucheck/__main__.py": FAKE_MAIN}
    )
    return folder


@pytest.fixture(autouse=True)
def isolated_pip(monkeypatch):
    """No user/site pip configuration: only what the command line says."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


@pytest.fixture
def snapshot(tmp_path) -> str:
    snap = Snapshot(
        system=System(
            os="linux",
            arch="x86_64",
            python=PythonInfo(version=PY + ".0", executable=sys.executable),
        )
    )
    path = tmp_path / "snap.json"
    path.write_text(snap.to_json())
    return str(path)


def bootstrap(*argv: str) -> int:
    return main(["bootstrap", *argv])


def freeze(venv: Path) -> str:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def common(snapshot: str, wheels: Path, spec: str = "gpucheck==0.0.1") -> list[str]:
    return [
        "--from-snapshot",
        snapshot,
        "--no-index",
        "--find-links",
        str(wheels),
        "--gpucheck-spec",
        spec,
    ]


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout")


def test_dry_run_shows_commands_and_changes_nothing(tmp_path, snapshot, wheels, capsys):
    venv = tmp_path / "env"
    assert bootstrap("--venv", str(venv), "--dry-run", *common(snapshot, wheels)) == 0
    out = capsys.readouterr().out
    assert "-m venv" in out and "torch==2.14.1" in out and "torchvision==0.29.1" in out
    assert "--no-index" in out and "dry run" in out
    assert not venv.exists()


def test_refuses_without_yes_on_non_interactive_input(tmp_path, snapshot, wheels, capsys):
    venv = tmp_path / "env"
    assert bootstrap("--venv", str(venv), *common(snapshot, wheels)) == 1
    assert "--yes" in capsys.readouterr().out and not venv.exists()


def test_end_to_end_new_venv(tmp_path, snapshot, wheels, capsys):
    venv = tmp_path / "env"
    assert bootstrap("--venv", str(venv), "--yes", *common(snapshot, wheels)) == 0
    out = capsys.readouterr().out
    assert "verdict inside" in out and "PASS" in out
    frozen = freeze(venv)
    assert "torch==2.14.1" in frozen and "torchvision==0.29.1" in frozen


def test_failure_removes_a_new_venv(tmp_path, snapshot, wheels, capsys):
    venv = tmp_path / "env"
    rc = bootstrap("--venv", str(venv), "--yes", *common(snapshot, wheels, spec="gpucheck==9.9.9"))
    out = capsys.readouterr().out
    assert rc == 1 and "failed" in out and not venv.exists()


def test_failure_leaves_an_existing_venv_as_it_was(tmp_path, snapshot, wheels, capsys):
    venv = tmp_path / "existing"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    before = freeze(venv)
    rc = bootstrap("--venv", str(venv), "--yes", *common(snapshot, wheels, spec="gpucheck==9.9.9"))
    out = capsys.readouterr().out
    assert rc == 1
    assert "torch" in out and "back as it was" in out  # torch was installed, then taken out
    assert freeze(venv) == before


def test_venv_path_that_is_not_a_venv(tmp_path, snapshot, wheels, capsys):
    (tmp_path / "notenv").mkdir()
    (tmp_path / "notenv" / "file").write_text("x")
    assert bootstrap("--venv", str(tmp_path / "notenv"), *common(snapshot, wheels)) == 2
    assert "not a virtual environment" in capsys.readouterr().err


def test_nothing_fits_installs_nothing(tmp_path, wheels, capsys):
    snap = Snapshot(
        system=System(
            os="linux", arch="x86_64", python=PythonInfo(version="3.7.9", executable="/x")
        )
    )
    path = tmp_path / "old.json"
    path.write_text(snap.to_json())
    venv = tmp_path / "env"
    assert bootstrap("--venv", str(venv), "--yes", *common(str(path), wheels)) == 1
    assert "nothing installed" in capsys.readouterr().out and not venv.exists()
