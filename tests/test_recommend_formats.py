"""`gpucheck recommend --format`: each project file parsed back with its own format's parser.

The build itself is the engine's business (tests/test_recommend_*.py); here every file must
say exactly what `--json` says for the same described machine: the index, the pins, the
markers, the conda-forge line.
"""

from __future__ import annotations

import json

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement

from gpucheck.cli import main
from gpucheck.recommend import Recommendation
from gpucheck.recommend import formats as fm

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    tomllib = pytest.importorskip("tomli")

# described machines: (id, flags)
MACHINES = [
    ("linux-rtx4090", ["--os", "linux", "--gpu", "RTX 4090", "--driver", "570.86.10"]),
    ("linux-gtx1080", ["--os", "linux", "--gpu", "GTX 1080", "--driver", "550.54.14"]),
    ("linux-h100-580", ["--os", "linux", "--gpu", "H100", "--driver", "580.65.06"]),
    (
        "aarch64-h100",
        ["--os", "linux", "--arch", "aarch64", "--gpu", "H100", "--driver", "580.65.06"],
    ),
    ("windows-rtx4090", ["--os", "windows", "--gpu", "RTX 4090", "--driver", "580.88"]),
    ("macos", ["--os", "macos"]),
    ("linux-cpu", ["--os", "linux", "--arch", "x86_64"]),  # the bare snapshot has no GPU
    ("linux-rocm", ["--os", "linux", "--rocm-arch", "gfx942"]),
]

ENVS = {  # PEP 508 environments of each platform
    "linux-x86_64": {"sys_platform": "linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_machine": "aarch64"},
    "windows-x86_64": {"sys_platform": "win32", "platform_machine": "AMD64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_machine": "arm64"},
}


@pytest.fixture
def empty_snapshot(tmp_path):
    """A bare machine to start from, so that nothing of this machine leaks into the answer."""
    from gpucheck.snapshot import PythonInfo, Snapshot, System

    snap = Snapshot(
        system=System(
            os="linux", arch="x86_64", python=PythonInfo(version="3.12.3", executable="/x/python")
        )
    )
    path = tmp_path / "bare.json"
    path.write_text(snap.to_json())
    return str(path)


def recommend(capsys, argv):
    rc = main(["recommend", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def as_json(capsys, flags):
    rc, out, _err = recommend(capsys, ["--json", *flags])
    return rc, json.loads(out)


def platform_of(d):
    m = d["machine"]
    arch = m["arch"]
    if m["os"] == "linux" and arch == "arm64":
        arch = "aarch64"
    return f"{m['os']}-{arch}"


def pins_of(d):
    out = {"torch": d["torch"]}
    for name in ("torchvision", "torchaudio"):
        if d.get(name):
            out[name] = d[name]
    return out


def conda_specs_of(line):
    """'conda install -c conda-forge pytorch-gpu cuda-version=12.9' -> {name: spec}."""
    words = line.split()[2:]
    out, skip = {}, False
    for w in words:
        if skip:
            skip = False
        elif w == "-c":
            skip = True
        else:
            spec = fm.parse_conda_spec(w.strip("'\""))
            out[spec.name] = spec
    return out


@pytest.fixture(params=MACHINES, ids=[m[0] for m in MACHINES])
def machine(request, capsys, empty_snapshot):
    flags = ["--from-snapshot", empty_snapshot, "--python", "3.12", *request.param[1]]
    rc, d = as_json(capsys, flags)
    assert d["variant"] is not None, f"{request.param[0]}: the engine found no build"
    return flags, rc, d


def test_pip_is_the_default_and_unchanged(capsys, empty_snapshot):
    flags = ["--from-snapshot", empty_snapshot, "--os", "linux", "--python", "3.12"]
    rc1, plain, _ = recommend(capsys, flags)
    rc2, pip, _ = recommend(capsys, [*flags, "--format", "pip"])
    assert (rc1, plain) == (rc2, pip)
    assert "pip install torch==" in plain


def test_uv_project(machine, capsys):
    flags, rc_json, d = machine
    rc, out, err = recommend(capsys, [*flags, "--format", "uv-project"])
    assert rc == rc_json and (err == "") == (rc == 0)
    doc = tomllib.loads(out)
    reqs = {r.name: r for r in map(Requirement, doc["project"]["dependencies"])}
    assert {n: str(r.specifier) for n, r in reqs.items()} == {
        n: f"=={v}" for n, v in pins_of(d).items()
    }
    uv = doc.get("tool", {}).get("uv", {})
    if d["index_url"] is None:  # PyPI's wheel is the build: no index, no sources
        assert uv == {}
        return
    [index] = uv["index"]
    assert index == {"name": f"pytorch-{d['variant']}", "url": d["index_url"], "explicit": True}
    assert set(uv["sources"]) == set(reqs)
    here = platform_of(d)
    for name, sources in uv["sources"].items():
        [src] = sources
        assert src["index"] == index["name"], name
        marker = Marker(src["marker"])
        assert marker.evaluate(ENVS[here]), f"{name}: this machine must take the index"
        for other, env in ENVS.items():
            if other.split("-")[0] != here.split("-")[0]:
                assert not marker.evaluate(env), f"{name}: {other} must keep PyPI"
    assert "astral-sh/uv#21535" in out


def test_requirements(machine, capsys):
    flags, rc_json, d = machine
    rc, out, _err = recommend(capsys, [*flags, "--format", "requirements"])
    assert rc == rc_json
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]
    options = [ln for ln in lines if ln.startswith("-")]
    if d["index_url"]:
        assert options == [f"--index-url {d['index_url']}"]
    else:
        assert options == []
    reqs = [Requirement(ln) for ln in lines if not ln.startswith("-")]
    assert {r.name: str(r.specifier) for r in reqs} == {n: f"=={v}" for n, v in pins_of(d).items()}
    assert all(r.marker is None for r in reqs)


def test_pixi(machine, capsys):
    flags, rc_json, d = machine
    rc, out, _err = recommend(capsys, [*flags, "--format", "pixi"])
    assert rc == rc_json
    doc = tomllib.loads(out)
    ws = doc["workspace"]
    assert ws["channels"] == ["conda-forge"]
    assert ws["platforms"] == [fm.CONDA_SUBDIR[platform_of(d)]]
    deps = doc["dependencies"]
    assert deps["python"] == "3.12.*"
    if d["conda"]:
        specs = conda_specs_of(d["conda"])
        meta = "pytorch-gpu" if "pytorch-gpu" in specs else "pytorch-cpu"
        assert meta in deps and "pypi-dependencies" not in doc
        if d.get("conda_torch") and not specs[meta].op:
            assert deps[meta] == f"{d['conda_torch']}.*"
        if meta == "pytorch-gpu":
            cuda = specs["cuda-version"].version
            assert deps["cuda-version"] == f"{cuda}.*"
            assert doc["system-requirements"] == {"cuda": cuda.split(".")[0]}
            assert f"CONDA_OVERRIDE_CUDA={cuda}" in out
        else:
            assert "system-requirements" not in doc and "CONDA_OVERRIDE_CUDA" not in out
    else:  # no conda-forge build fits: PyPI wheels, from the PyTorch index where needed
        pypi = doc["pypi-dependencies"]
        assert {n: e["version"] for n, e in pypi.items()} == {
            n: f"=={v}" for n, v in pins_of(d).items()
        }
        assert {e.get("index") for e in pypi.values()} == {d["index_url"]}


def test_conda_env(machine, capsys):
    flags, rc_json, d = machine
    rc, out, _err = recommend(capsys, [*flags, "--format", "conda-env"])
    assert rc == rc_json
    doc = yaml.safe_load(out)
    assert doc["channels"] == ["conda-forge", "nodefaults"]
    deps = doc["dependencies"]
    assert "python=3.12" in deps
    if d["conda"]:
        specs = conda_specs_of(d["conda"])
        for spec in specs.values():
            if spec.name in ("pytorch-gpu", "pytorch-cpu") and not spec.op and d["conda_torch"]:
                assert f"{spec.name}={d['conda_torch']}" in deps
            else:
                assert spec.matchspec() in deps
        assert ("CONDA_OVERRIDE_CUDA" in out) == ("pytorch-gpu" in specs)
    else:
        [pip] = [x["pip"] for x in deps if isinstance(x, dict)]
        assert "pip" in deps
        wanted = [f"{n}=={v}" for n, v in pins_of(d).items()]
        if d["index_url"]:
            wanted.insert(0, f"--index-url {d['index_url']}")
        assert pip == wanted


def test_no_build_is_one_line_on_stderr_and_exit_1(capsys, empty_snapshot):
    flags = ["--from-snapshot", empty_snapshot, "--os", "linux", "--python", "3.12"]
    flags += ["--gpu", "Tesla K20", "--compute-capability", "3.5", "--driver", "470.82.01"]
    rc, d = as_json(capsys, flags)
    assert d["variant"] is None
    for fmt in ("uv-project", "pixi", "requirements", "conda-env"):
        rc, out, err = recommend(capsys, [*flags, "--format", fmt])
        assert (rc, out) == (1, "")
        assert len(err.strip().splitlines()) == 1 and "nothing to write" in err


def test_json_and_format_is_a_usage_error(capsys):
    rc, out, err = recommend(capsys, ["--os", "linux", "--json", "--format", "pixi"])
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_bad_format_is_a_usage_error(capsys):
    rc, _out, err = recommend(capsys, ["--os", "linux", "--format", "poetry"])
    assert rc == 2 and "--format" in err


def make_rec(**kw):
    base = dict(
        variant="cu130",
        torch="2.14.1",
        build="2.14.1+cu130",
        index_url="https://download.pytorch.org/whl/cu130",
        torchvision="0.29.1",
        conda="conda install -c conda-forge pytorch-gpu cuda-version=13.0",
        conda_torch="2.13.0",
        driver_required="580",
        driver_full_feature="580.65.06",
        machine={"os": "linux", "arch": "x86_64", "python": "3.12"},
    )
    base.update(kw)
    action = base.pop("action", "install")
    return Recommendation(action=action, **base)


def test_a_driver_upgrade_is_named_in_the_file_and_on_stderr(capsys):
    rec = make_rec(action="upgrade-driver")
    rc = fm.write_format(rec, "requirements")
    captured = capsys.readouterr()
    assert rc == 1
    assert "# before installing: upgrade the NVIDIA driver to >= 580.65.06" in captured.out
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("gpucheck: upgrade the NVIDIA driver to >= 580.65.06 first")
    assert f"--index-url {rec.index_url}" in captured.out


def test_marker_narrows_to_one_cpu_when_the_index_has_only_it():
    rec = make_rec(machine={"os": "linux", "arch": "x86_64", "python": "3.12"})
    narrow = fm.uv_marker(rec, ("linux-x86_64", "windows-x86_64"))
    both = fm.uv_marker(rec, ("linux-x86_64", "linux-aarch64"))
    assert Marker(narrow).evaluate(ENVS["linux-x86_64"])
    assert not Marker(narrow).evaluate(ENVS["linux-aarch64"])
    assert Marker(both).evaluate(ENVS["linux-aarch64"])
    win = make_rec(machine={"os": "windows", "arch": "x86_64", "python": "3.12"})
    assert fm.uv_marker(win, None) == "sys_platform == 'win32'"


def test_conda_line_with_its_own_pins_is_kept():
    rec = make_rec(
        conda="conda install -c conda-forge 'pytorch-gpu=2.12' cuda-version=12.9 'cudnn<9.11'"
    )
    names = {s.name: s for s in fm.conda_specs(rec)}
    assert names["pytorch-gpu"].matchspec() == "pytorch-gpu=2.12"  # not replaced by conda_torch
    assert names["cudnn"].matchspec() == "cudnn<9.11"
    doc = tomllib.loads(fm.pixi(rec))
    assert doc["dependencies"]["cudnn"] == "<9.11"
    assert doc["dependencies"]["pytorch-gpu"] == "2.12.*"
    env = yaml.safe_load(fm.conda_env(rec))
    assert "cudnn<9.11" in env["dependencies"]


def test_free_threaded_python():
    rec = make_rec(machine={"os": "linux", "arch": "x86_64", "python": "3.14t"})
    env = yaml.safe_load(fm.conda_env(rec))
    assert {"python=3.14", "python-freethreading"} <= set(env["dependencies"])
    doc = tomllib.loads(fm.pixi(rec))
    assert doc["dependencies"]["python"] == "3.14.*"
    assert "python-freethreading" in doc["dependencies"]


def test_change_python_pins_the_python_the_build_needs(capsys):
    rec_machine = {"os": "linux", "arch": "x86_64", "python": "3.8"}
    rec = make_rec(action="change-python", python_required="3.12", machine=rec_machine)
    assert tomllib.loads(fm.pixi(rec))["dependencies"]["python"] == "3.12.*"
    assert "python=3.12" in yaml.safe_load(fm.conda_env(rec))["dependencies"]
    assert fm.write_format(rec, "uv-project") == 1
    err = capsys.readouterr().err
    assert err.startswith("gpucheck: use Python 3.12") and err.count("\n") == 1


def test_machine_as_object_works_too():
    from gpucheck.recommend import Machine

    rec = make_rec(machine=Machine(os="macos", arch="arm64", python="3.12"), index_url=None)
    doc = tomllib.loads(fm.uv_project(rec))
    assert "tool" not in doc
    assert fm.target_of(rec).platform == "macos-arm64"
