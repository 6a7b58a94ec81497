"""`gpucheck recommend`: flags, --json, --from-snapshot, --compat, usage errors."""

from __future__ import annotations

import argparse
import json

import pytest

from gpucheck.cli import main
from gpucheck.errors import UsageError
from gpucheck.recommend import cli as rcli
from gpucheck.snapshot import Driver, Gpu, PythonInfo, Snapshot, System, Torch


def write_snapshot(tmp_path, *, gpus=(), driver=None, torch=None, python="3.11.7", os_name="linux"):
    snap = Snapshot(
        system=System(
            os=os_name, arch="x86_64", python=PythonInfo(version=python, executable="/x/python")
        ),
        driver=Driver(version=driver, cuda_version="12.4" if driver else None),
        gpus=tuple(Gpu(index=i, name=n, compute_capability=cc) for i, (n, cc) in enumerate(gpus)),
        torch=torch or Torch(),
    )
    path = tmp_path / "snap.json"
    path.write_text(snap.to_json())
    return str(path)


def run_json(capsys, argv):
    rc = main(["recommend", "--json", *argv])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_this_machine_shape_from_snapshot(tmp_path, capsys):
    snap = write_snapshot(tmp_path, torch=Torch(installed=True, version="2.13.0+cpu", local="cpu"))
    rc, d = run_json(capsys, ["--from-snapshot", snap])
    assert rc == 0
    assert d["action"] == "none" and d["variant"] == "cpu"
    assert d["index_url"] == "https://download.pytorch.org/whl/cpu"
    for key in (
        "variant",
        "torch",
        "index_url",
        "pip",
        "uv",
        "conda",
        "torchvision",
        "torchaudio",
        "action",
        "reasons",
        "warnings",
    ):
        assert key in d


def test_what_if_flags_override(tmp_path, capsys):
    snap = write_snapshot(tmp_path)
    rc, d = run_json(
        capsys, ["--from-snapshot", snap, "--gpu", "GTX 1080 Ti", "--driver", "580.65.06"]
    )
    assert rc == 0 and d["variant"] == "cu126" and d["action"] == "install"
    assert d["pip"].endswith("--index-url https://download.pytorch.org/whl/cu126")


def test_gpu_and_compute_capability_pair_by_order(tmp_path, capsys):
    snap = write_snapshot(tmp_path)
    rc, d = run_json(
        capsys,
        [
            "--from-snapshot",
            snap,
            "--driver",
            "580.65.06",
            "--gpu",
            "Prototype",
            "--compute-capability",
            "12.0",
        ],
    )
    assert d["variant"] == "cu130"
    gpus = d["machine"]["gpus"]
    assert gpus[0]["name"] == "Prototype" and gpus[0]["compute_capability"] == "12.0"


def test_os_python_change_drops_installed_torch(tmp_path, capsys):
    snap = write_snapshot(tmp_path, torch=Torch(installed=True, version="2.13.0+cpu", local="cpu"))
    rc, d = run_json(capsys, ["--from-snapshot", snap, "--os", "windows", "--python", "3.12"])
    assert d["installed"] is None and d["action"] == "install"
    assert d["index_url"] is None and d["pip"].startswith("pip install torch==2.14.1")


def test_macos_and_rocm_and_wsl(tmp_path, capsys):
    snap = write_snapshot(tmp_path)
    _, d = run_json(capsys, ["--from-snapshot", snap, "--os", "macos"])
    assert d["variant"] == "cpu" and d["index_url"] is None
    _, d = run_json(capsys, ["--from-snapshot", snap, "--rocm-arch", "gfx942"])
    assert d["variant"] == "rocm7.2"
    _, d = run_json(
        capsys, ["--from-snapshot", snap, "--wsl", "--gpu", "RTX 4090", "--driver", "572.60"]
    )
    assert d["variant"] == "cu126" and any("WSL2" in r for r in d["reasons"])


def test_torch_spec(tmp_path, capsys):
    snap = write_snapshot(tmp_path)
    _, d = run_json(capsys, ["--from-snapshot", snap, "--torch", "2.5.*"])
    assert d["torch"] == "2.5.1"


def test_nothing_fits_exits_1(tmp_path, capsys):
    snap = write_snapshot(tmp_path)
    rc, d = run_json(capsys, ["--from-snapshot", snap, "--python", "3.7"])
    assert rc == 1 and d["action"] == "change-python" and d["python_required"] == "3.10"


def test_human_output_puts_the_command_first(tmp_path, capsys):
    snap = write_snapshot(tmp_path)
    rc = main(["recommend", "--from-snapshot", snap, "--gpu", "H100", "--driver", "550.54.14"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].startswith("Install torch 2.14.1+cu126")
    assert "pip install torch==2.14.1" in out[1]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--python", "3.x"], "--python"),
        (["--driver", "latest"], "--driver"),
        (["--compute-capability", "9"], "--compute-capability"),
        (["--rocm-arch", "mi300"], "--rocm-arch"),
        (["--torch", "~~2"], "--torch"),
        (["--os", "windows", "--wsl"], "--wsl"),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path, capsys, argv, fragment):
    snap = write_snapshot(tmp_path)
    rc = main(["recommend", "--from-snapshot", snap, *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and fragment in err[0]


def test_bad_compat_and_snapshot_files(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    snap = write_snapshot(tmp_path)
    assert main(["recommend", "--from-snapshot", snap, "--compat", str(bad)]) == 2
    assert main(["recommend", "--from-snapshot", str(bad)]) == 2
    assert main(["recommend", "--from-snapshot", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3


def test_run_raises_usage_error_directly(tmp_path):
    parser = argparse.ArgumentParser()
    rcli.add_arguments(parser)
    args = parser.parse_args(["--from-snapshot", write_snapshot(tmp_path), "--driver", "x"])
    with pytest.raises(UsageError):
        rcli.run(args)


def test_probe_is_used_without_a_snapshot(monkeypatch, tmp_path, capsys):
    import gpucheck.probe

    snap_path = write_snapshot(
        tmp_path, gpus=[("NVIDIA H100 80GB HBM3", "9.0")], driver="580.65.06"
    )
    snap = Snapshot.from_json(open(snap_path).read())
    calls = []
    monkeypatch.setattr(gpucheck.probe, "collect", lambda **kw: calls.append(kw) or snap)
    rc, d = run_json(capsys, [])
    assert calls == [{"torch_child": False}]
    assert d["variant"] == "cu130" and d["index_url"] is None
