"""`gpucheck bootstrap` end to end against a local package folder built here.

The `torch`, `torchvision` and `gpucheck` distributions are throwaway wheels written by hand
with zipfile: nothing is downloaded, and no real torch is installed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
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
ok = torch.__version__ == "2.14.1+cpu"
print(json.dumps({"verdict": "PASS" if ok else "FAIL", "exit_code": 0 if ok else 1,
                  "findings": [], "argv": sys.argv[1:]}))
sys.exit(0 if ok else 1)
"""


def make_wheel(
    folder: Path, name: str, version: str, files: dict[str, str], requires: tuple[str, ...] = ()
) -> Path:
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    files = dict(files)
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nProvides-Extra: bench\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files[f"{dist}/METADATA"] = meta
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
    wheel = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def torch_wheel(folder: Path, version: str) -> Path:
    return make_wheel(
        folder, "torch", version, {"torch/__init__.py": f'__version__ = "{version}"\n'}
    )


def build_wheels(folder: Path) -> Path:
    """The PyTorch index's builds (tagged +cpu, as there) and gpucheck, as pip would find them."""
    torch_wheel(folder, "2.14.1+cpu")
    make_wheel(
        folder,
        "torchvision",
        "0.29.1+cpu",
        {"torchvision/__init__.py": '__version__ = "0.29.1+cpu"\n'},
        requires=("torch==2.14.1",),
    )
    make_wheel(
        folder,
        "gpu-path-check",
        "0.0.1",
        {"gpucheck/__init__.py": "", "gpucheck/__main__.py": FAKE_MAIN},
    )
    return folder


def write_snapshot(path: Path) -> str:
    snap = Snapshot(
        system=System(
            os="linux",
            arch="x86_64",
            python=PythonInfo(version=PY + ".0", executable=sys.executable),
        )
    )
    path.write_text(snap.to_json())
    return str(path)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    return build_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(autouse=True)
def isolated_pip(monkeypatch):
    """No user/site pip configuration: only what the command line says."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


@pytest.fixture
def snapshot(tmp_path) -> str:
    return write_snapshot(tmp_path / "snap.json")


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


def common(snapshot: str, wheels: Path, spec: str = "gpu-path-check==0.0.1") -> list[str]:
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
    # exact builds, local tag included: no other build of 2.14.1 can satisfy these
    assert "torch==2.14.1+cpu torchvision==0.29.1+cpu" in out and "-m venv" in out
    assert "PIP_CONFIG_FILE=" in out
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
    assert "torch==2.14.1+cpu" in frozen and "torchvision==0.29.1+cpu" in frozen


def test_failure_removes_a_new_venv(tmp_path, snapshot, wheels, capsys):
    venv = tmp_path / "env"
    rc = bootstrap(
        "--venv", str(venv), "--yes", *common(snapshot, wheels, spec="gpu-path-check==9.9.9")
    )
    out = capsys.readouterr().out
    assert rc == 1 and "failed" in out and not venv.exists()


def test_failure_leaves_an_existing_venv_as_it_was(tmp_path, snapshot, wheels, capsys):
    venv = tmp_path / "existing"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    before = freeze(venv)
    rc = bootstrap(
        "--venv", str(venv), "--yes", *common(snapshot, wheels, spec="gpu-path-check==9.9.9")
    )
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


# --- the build installed is the build announced (issue 10 item 4) -----------------------------


def test_pip_configuration_cannot_substitute_another_build(tmp_path, snapshot, wheels, monkeypatch):
    # pip's configuration names a folder with another build of the same release (sorting
    # higher, so an unpinned `torch==2.14.1` took it) and a constraint the plan breaks.
    other = tmp_path / "mirror"
    other.mkdir()
    torch_wheel(other, "2.14.1+cu130")
    (tmp_path / "constraints.txt").write_text("torch<2.14\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nfind-links = {other}\nconstraint = {tmp_path / 'constraints.txt'}\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_FIND_LINKS", str(other))
    venv = tmp_path / "env"
    common_args = common(snapshot, wheels)
    assert bootstrap("--venv", str(venv), "--yes", "--no-check", *common_args) == 0
    frozen = freeze(venv)
    assert "torch==2.14.1+cpu" in frozen and "torchvision==0.29.1+cpu" in frozen


def test_another_build_at_the_end_is_undone(tmp_path, snapshot, wheels, capsys):
    # gpucheck's own requirements pull another torch build after the torch step: caught
    # by the check of what the environment holds, and the new venv is removed.
    folder = tmp_path / "wheels"
    shutil.copytree(wheels, folder)
    torch_wheel(folder, "2.14.1+cu130")
    make_wheel(
        folder,
        "gpu-path-check",
        "0.0.2",
        {"gpucheck/__init__.py": "", "gpucheck/__main__.py": FAKE_MAIN},
        requires=("torch==2.14.1+cu130",),
    )
    venv = tmp_path / "env"
    rc = bootstrap("--venv", str(venv), "--yes", *common(snapshot, folder, "gpu-path-check==0.0.2"))
    out = capsys.readouterr().out
    assert rc == 1 and not venv.exists()
    assert "torch 2.14.1+cu130 is installed, not the planned 2.14.1+cpu" in out


def test_unreachable_index_is_one_line_naming_the_options(tmp_path, snapshot, capsys):
    venv = tmp_path / "env"
    # port 9 (discard) on the loopback: refused at once, no network needed
    rc = bootstrap(
        "--venv", str(venv), "--yes", "--from-snapshot", snapshot,
        "--index-url", "http://127.0.0.1:9/simple", "--gpucheck-spec", "gpu-path-check==0.0.1",
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 1 and not venv.exists()
    line = next(x for x in captured.out.splitlines() if "cannot reach" in x)
    assert "http://127.0.0.1:9/simple" in line and "--index-url" in line and "--find-links" in line
    assert "Retrying" not in captured.out + captured.err


@pytest.mark.parametrize("flag", ["--install-timeout", "--check-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_timeouts_must_be_finite_and_positive(tmp_path, snapshot, wheels, capsys, flag, value):
    rc = bootstrap("--venv", str(tmp_path / "env"), flag, value, *common(snapshot, wheels))
    assert rc == 2 and flag in capsys.readouterr().err


def test_ctrl_c_removes_the_venv_it_was_building(tmp_path, snapshot, wheels, monkeypatch, capsys):
    from gpucheck import bootstrap as bs

    real_run = bs._run
    calls = []

    def interrupted_after_the_venv(step, env):
        calls.append(step.what)
        if len(calls) == 2:  # the venv exists now; Ctrl-C lands during the torch install
            raise KeyboardInterrupt
        return real_run(step, env)

    monkeypatch.setattr(bs, "_run", interrupted_after_the_venv)
    venv = tmp_path / "env"
    assert bootstrap("--venv", str(venv), "--yes", *common(snapshot, wheels)) == 130
    assert not venv.exists() and "interrupted" in capsys.readouterr().out


# --- GC216: a torch/torchvision pair that does not match --------------------------------------


def _pair_snapshot(torch_version: str, vision: str | None):
    from gpucheck.probe.parsers import local_tag
    from gpucheck.snapshot import Torch

    return Snapshot(
        system=System(
            os="linux", arch="x86_64", python=PythonInfo(version=PY + ".0", executable="/x")
        ),
        torch=Torch(
            installed=True,
            version=torch_version,
            local=local_tag(torch_version),
            torchvision=vision,
        ),
    )


@pytest.mark.parametrize(
    "torch_version, vision, why",
    [
        ("2.13.0+cpu", "0.29.1", "does not pair"),  # the pair bootstrap used to make
        ("2.14.1+cpu", "0.29.1", "the cu130 build"),  # +cpu torch, PyPI (CUDA) torchvision
        ("2.14.1+cu126", "0.29.1+cpu", "the cpu build"),
    ],
)
def test_gc216_mismatched_torchvision(torch_version, vision, why):
    from gpucheck.diagnose import diagnose

    found = [f for f in diagnose(_pair_snapshot(torch_version, vision)) if f.id == "GC216"]
    assert len(found) == 1 and any(why in e for e in found[0].evidence), found
    assert (
        found[0].severity.value == "error"
        and "pip install torchvision==" in (found[0].fix or "")
        or "gpucheck recommend" in (found[0].fix or "")
    )


@pytest.mark.parametrize(
    "torch_version, vision",
    [
        ("2.14.1+cpu", "0.29.1+cpu"),
        ("2.14.1", "0.29.1"),
        ("2.9.1+cu128", "0.24.1+cu128"),
        ("2.14.1", None),
    ],
)
def test_gc216_silent_for_a_matching_pair(torch_version, vision):
    from gpucheck.diagnose import diagnose

    assert not [f for f in diagnose(_pair_snapshot(torch_version, vision)) if f.id == "GC216"]


def test_gc216_fix_names_the_exact_torchvision():
    from gpucheck.diagnose import diagnose

    (found,) = [f for f in diagnose(_pair_snapshot("2.14.1+cpu", "0.28.0")) if f.id == "GC216"]
    assert (
        "`pip install torchvision==0.29.1+cpu --index-url https://download.pytorch.org/whl/cpu`"
        in found.fix
    )


def test_torchvision_version_is_read_statically(tmp_path):
    """probe_torch_static reads torchvision's version from metadata, without importing it."""
    from gpucheck.probe.pyenv import PyEnv
    from gpucheck.probe.torch_static import probe_torch_static

    site = tmp_path / "site"
    site.mkdir()
    for wheel in (torch_wheel(tmp_path, "2.14.1+cpu"),):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    make_wheel(
        tmp_path, "torchvision", "0.29.1+cpu", {"torchvision/__init__.py": "raise SystemExit"}
    )
    with zipfile.ZipFile(tmp_path / "torchvision-0.29.1+cpu-py3-none-any.whl") as zf:
        zf.extractall(site)
    torch = probe_torch_static(PyEnv(executable=sys.executable, path=(str(site),)))
    assert torch.version == "2.14.1+cpu" and torch.torchvision == "0.29.1+cpu"


def test_isolated_env_drops_sources_and_keeps_network_settings():
    from gpucheck.bootstrap import Step
    from gpucheck.bootstrap_guard import isolated_env

    env = {
        "PIP_FIND_LINKS": "/mirror",
        "PIP_INDEX_URL": "http://m",
        "PIP_CERT": "/ca.pem",
        "A": "1",
    }
    out = isolated_env(env, {"proxy": "http://proxy:3128", "cert": "/other.pem"})
    assert "PIP_FIND_LINKS" not in out and "PIP_INDEX_URL" not in out and out["A"] == "1"
    assert out["PIP_CONFIG_FILE"] == os.devnull and out["UV_NO_CONFIG"] == "1"
    assert out["PIP_PROXY"] == "http://proxy:3128" and out["PIP_CERT"] == "/ca.pem"  # env wins
    uv = Step("install torch", ("/usr/bin/uv", "pip", "install", "torch"), 1.0, isolated=True)
    assert uv.shown().startswith("UV_NO_CONFIG=1 /usr/bin/uv pip install")


def test_real_sigint_during_the_torch_install_removes_the_new_venv(tmp_path, snapshot):
    """SIGINT to the bootstrap process while pip waits on an index that never answers."""
    import signal
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the kernel; nothing ever answers them
    port = silent.getsockname()[1]
    venv = tmp_path / "env"
    argv = [sys.executable, "-m", "gpucheck", "bootstrap", "--venv", str(venv), "--yes"]
    argv += ["--from-snapshot", snapshot, "--index-url", f"http://127.0.0.1:{port}/simple"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (venv / "bin" / "pip").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # pip is now waiting on the silent index
        assert child.poll() is None
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=120)
    finally:
        child.kill()
        silent.close()
    assert child.returncode == 130, out
    assert "interrupted" in out and not venv.exists()
