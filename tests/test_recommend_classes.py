"""Table-driven tests per class of rule (issue 11 / issue 10): each row is a described machine.

The rows are machines the older tests do not name, so that a rule is checked as a class, not
as the audit's examples. docs/recommend.md gives each rule and its source.
"""

from __future__ import annotations

import json

import pytest
from conftest import FUZZ_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gpucheck.cli import main
from gpucheck.compat import load_table
from gpucheck.recommend import InstalledTorch, Machine, describe_gpu, parse_torch_spec, recommend
from gpucheck.render.recommendation import print_recommendation

TABLE = load_table()


def machine(os="linux", arch="x86_64", py="3.11", driver=None, gpus=(), **kw):
    described = []
    for i, g in enumerate(gpus):
        name, cc = (g, None) if isinstance(g, str) else g
        described.append(describe_gpu(i, name, cc, TABLE))
    return Machine(os=os, arch=arch, python=py, driver=driver, gpus=tuple(described), **kw)


def rec_of(spec=None, **kw):
    return recommend(machine(**kw), table=TABLE, torch_spec=spec)


def cli(capsys, *argv):
    rc = main(["recommend", "--os", "linux", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# --- kernels first ------------------------------------------------------------------------

# (name, compute capability) from NVIDIA's CUDA GPUs lists (current and legacy)
NAMES = [
    ("NVIDIA GeForce GTX 960", "5.2"),
    ("GeForce GTX 950", "5.2"),
    ("Quadro K620", "5.0"),
    ("GeForce 940M", "5.0"),
    ("NVIDIA GeForce MX150", "6.1"),
    ("NVIDIA GeForce MX350", "6.1"),
    ("Quadro P620", "6.1"),
    ("Quadro P400", "6.1"),
    ("NVIDIA GeForce MX450", "7.5"),
    ("NVIDIA T400", "7.5"),
    ("NVIDIA T600 Laptop GPU", "7.5"),
    ("NVIDIA GeForce GTX 1630", "7.5"),
    ("NVIDIA RTX A1000", "8.6"),
    ("NVIDIA RTX A500 Laptop GPU", "8.6"),
    ("NVIDIA GeForce RTX 2050", "8.6"),
    ("Jetson Nano", "5.3"),
    ("Jetson TX2", "6.2"),
    ("Jetson Xavier NX", "7.2"),
    ("Orin (nvgpu)", "8.7"),
    ("Jetson T5000", "11.0"),
    ("NVIDIA RTX PRO 2000 Blackwell", "12.0"),
    ("GeForce GTX 780 Ti", "3.5"),
    ("NVIDIA GeForce GTX TITAN X", "5.2"),  # not the Kepler "GTX TITAN"
    ("NVIDIA TITAN Xp", "6.1"),
    ("Quadro K4000", "3.0"),
]


@pytest.mark.parametrize("name,cc", NAMES)
def test_gpu_names_from_nvidias_list(name, cc):
    assert describe_gpu(0, name, None, TABLE).compute_capability == cc


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--gpu", "Foo 9000"], "--compute-capability"),
        (["--gpu", "Quadro Z9"], "nvidia-smi --query-gpu=name,compute_cap"),
        (["--compute-capability", "99.9"], "not a compute capability NVIDIA lists"),
        (["--compute-capability", "13.0"], "not a compute capability NVIDIA lists"),
        (["--compute-capability", "0.9"], "not a compute capability NVIDIA lists"),
        (["--gpu", "Radeon Pro W9999"], "--rocm-arch"),
        (["--python", "3.13x"], "--python"),
        (["--glibc", "two"], "--glibc"),
    ],
)
def test_unknowable_gpus_are_input_errors(capsys, argv, fragment):
    rc, out, err = cli(capsys, *argv)
    assert rc == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_an_unknown_name_with_its_capability_is_judged_by_it(capsys):
    rc, out, err = cli(
        capsys,
        "--gpu",
        "Foo 9000",
        "--compute-capability",
        "12.0",
        "--driver",
        "580.65.06",
        "--json",
    )
    d = json.loads(out)
    assert rc == 0 and d["variant"] in ("cu128", "cu129", "cu130", "cu132")


def test_unknown_capability_is_never_covered():
    rec = recommend(
        Machine(
            os="linux",
            arch="x86_64",
            python="3.11",
            driver="580.65.06",
            gpus=(describe_gpu(0, "Mystery GPU", None, TABLE, vendor="nvidia"),),
        ),
        table=TABLE,
    )
    assert rec.action == "unsupported" and rec.pip is None
    assert any("compute capability unknown" in r for r in rec.reasons)


@pytest.mark.parametrize(
    "gpu,driver,cuda",
    [
        ("H100", "450.80.02", "11.8"),
        ("RTX 5090", "550.54.14", "12.8"),
        ("RTX 4090", "470.82.01", "11.8"),
        ("B200", "560.35.03", "12.8"),
        ("RTX 3090", "450.80.02", "11.1"),
        ("L4", "510.47.03", "11.8"),
    ],
)
def test_a_driver_that_predates_the_gpu_is_never_told_install(gpu, driver, cuda):
    rec = rec_of(driver=driver, gpus=[gpu])
    assert rec.action == "upgrade-driver", rec.reasons
    assert any(f"CUDA {cuda} or newer" in r and "predates" in r for r in rec.reasons)


def test_an_installed_build_on_a_driver_that_predates_the_gpu_is_gc501():
    from gpucheck.recommend import recommend_findings

    m = machine(
        driver="450.80.02", gpus=["H100"], torch=InstalledTorch("2.7.1+cu118", "cu118", "11.8")
    )
    rec = recommend(m, table=TABLE)
    assert rec.installed.fits is False
    assert [(p.id, p.gpu, str(p.cause)) for p in rec.installed.problems] == [
        ("GC501", 0, "driver-too-old")
    ]
    (finding,) = recommend_findings(None, rec)
    assert finding.id == "GC501" and finding.gpu == 0


# --- Windows and WSL2 on CUDA 13.x --------------------------------------------------------


@pytest.mark.parametrize(
    "kw,variant",
    [
        (dict(os="windows", driver="581.57", gpus=["RTX 5080"]), "cu130"),
        (dict(os="windows", driver="596.36", gpus=["RTX 3060"]), "cu132"),
        (dict(driver="581.15", gpus=["L40S"], wsl=True), "cu130"),
        (dict(driver="591.74", gpus=["RTX A4000"], wsl=True), "cu130"),
    ],
)
def test_current_windows_drivers_get_cuda_13(kw, variant):
    rec = rec_of(**kw)
    assert rec.action == "install" and rec.variant == variant, rec.reasons
    assert any("Linux minimum of the same branch" in r for r in rec.reasons)


# --- aarch64 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,spec,expect",
    [
        (
            dict(arch="aarch64", driver="550.54.14", gpus=["GH200"]),
            None,
            ("2.14.1", "cu126", False),
        ),
        (dict(arch="aarch64", driver="580.65.06", gpus=["GH200"]), None, ("2.14.1", "cu130", True)),
        (
            dict(arch="aarch64", driver="550.54.14", gpus=["H100"]),
            "<2.12",
            ("2.11.0", "cu128", False),
        ),
        (
            dict(arch="aarch64", driver="570.86.10", gpus=["GB200"]),
            "<2.12",
            ("2.11.0", "cu128", False),
        ),
        (
            dict(arch="aarch64", driver="550.54.14", gpus=["H100"]),
            "2.5.*",
            ("2.5.1", "cu124", False),
        ),
        (dict(arch="aarch64"), None, ("2.14.1", "cpu", False)),
        (dict(arch="aarch64"), "2.10.*", ("2.10.0", "cpu", True)),
    ],
)
def test_aarch64_full_history(kw, spec, expect):
    rec = rec_of(spec, **kw)
    assert rec.action == "install", rec.reasons
    assert (rec.torch, rec.variant, rec.index_url is None) == expect


# --- Jetson -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,jetpack",
    [
        (dict(arch="aarch64", gpus=["Jetson AGX Orin"]), "JetPack 6"),
        (dict(arch="aarch64", gpus=["Orin (nvgpu)"]), "JetPack 6"),
        (dict(arch="aarch64", gpus=["Jetson Nano"]), "JetPack 4"),
        (dict(arch="aarch64", gpus=["Jetson Xavier NX"]), "JetPack 5"),
        (dict(gpus=["Jetson TX2"]), "JetPack 4"),  # described without --arch
        (
            dict(arch="aarch64", gpus=[("Orin", "8.7")], tegra="R35 (release), REVISION: 4.1"),
            "JetPack 5",
        ),
    ],
)
def test_jetson_never_gets_sbsa_wheels(kw, jetpack):
    rec = rec_of(**kw)
    text = json.dumps(rec.to_dict())
    assert rec.pip is None and rec.uv is None and "download.pytorch.org" not in text
    assert any(jetpack in r for r in rec.reasons)
    assert any("docs.nvidia.com" in r and "jetson" in r for r in rec.reasons)
    assert rec.conda is None or "cuda-version=12.9" in rec.conda


def test_jetson_tegra_conda_only_with_a_driver_for_its_cuda():
    rec = rec_of(arch="aarch64", gpus=["Jetson AGX Orin"], driver_cuda="12.9")
    assert rec.conda and "pytorch-gpu cuda-version=12.9" in rec.conda


def test_thor_runs_the_sbsa_wheels():
    rec = rec_of(arch="aarch64", driver="580.65.06", gpus=["Jetson AGX Thor"])
    assert rec.action == "install" and rec.variant in ("cu130", "cu132")


# --- cuDNN floors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,expect",
    [
        # cuDNN 9.0 refuses Kepler: every >= 2.4 cu118 build has sm_37 but cuDNN 9.1
        (dict(driver="470.82.01", gpus=["K80"]), ("2.3.1", "cu118")),
        (dict(driver="535.104.05", gpus=["Tesla K80"]), ("2.3.1", "cu118")),
        # cuDNN >= 9.11 refuses SM < 7.5: cu126 (cuDNN 9.10) is the one for Pascal/Volta
        (dict(driver="580.65.06", gpus=["V100"]), ("2.14.1", "cu126")),
        (dict(driver="560.35.03", gpus=["Quadro P620"]), ("2.14.1", "cu126")),
    ],
)
def test_cudnn_floors(kw, expect):
    rec = rec_of(**kw)
    assert (rec.torch, rec.variant) == expect, rec.reasons


@pytest.mark.parametrize("gpu", ["GTX 1080 Ti", "V100", "GTX 960"])
def test_conda_pins_cudnn_below_the_floor(gpu):
    rec = rec_of(driver="580.65.06", gpus=[gpu])
    assert rec.conda is not None and '"cudnn<9.11"' in rec.conda
    fine = rec_of(driver="580.65.06", gpus=["RTX 4090"])
    assert fine.conda is not None and "cudnn" not in fine.conda


def test_mixed_machine_names_the_lowest_gpu():
    rec = rec_of(driver="580.65.06", gpus=["RTX 5090", "GTX 1080 Ti"])
    assert rec.action == "install"
    text = " ".join(rec.reasons + rec.warnings)
    assert "CUDA_VISIBLE_DEVICES" in text or rec.variant == "cu126"


# --- newest that fits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,spec,expect",
    [
        (dict(driver="470.82.01", gpus=["T4"]), None, ("2.7.1", "cu118")),
        (dict(driver="418.39", gpus=["A100"]), None, None),  # below the 11.x MVC floor
        (dict(driver="515.65.01", gpus=["RTX 3080"]), None, ("2.7.1", "cu118")),
        (dict(gpus=["MI300X"]), None, ("2.14.1", "rocm7.2")),
        (dict(rocm=["gfx1100"]), None, ("2.14.1", "rocm7.2")),
        (dict(driver="580.65.06", gpus=["H100"]), "2.9.*", ("2.9.1", "cu130")),
    ],
)
def test_newest_that_fits(kw, spec, expect):
    rocm = kw.pop("rocm", ())
    rec = recommend(machine(**kw).replace(rocm_archs=tuple(rocm)), table=TABLE, torch_spec=spec)
    if expect is None:
        assert rec.action != "install"
    else:
        assert (rec.torch, rec.variant) == expect, rec.reasons


@pytest.mark.parametrize("spec", ["2.9.*", "<2.12", "2.13.0", ">=2.14"])
def test_every_command_honours_torch(spec):
    rec = rec_of(spec, driver="580.65.06", gpus=["RTX 4090"])
    assert f"torch=={rec.torch}" in rec.pip and f"torch=={rec.torch}" in rec.uv
    if rec.conda:
        assert f"pytorch={TABLE.conda_version}" in rec.conda
        assert parse_torch_spec(spec).contains(TABLE.conda_version)
    else:
        assert any(r.startswith("conda:") for r in rec.reasons)


def test_conda_line_honours_python():
    assert "python=3.12" in rec_of(py="3.12", driver="580.65.06", gpus=["RTX 4090"]).conda
    assert "python=3.10" in rec_of(py="3.10").conda


@pytest.mark.parametrize(
    "py,expect,torchvision",
    [
        ("3.14t", "2.14.1", False),
        ("3.13t", "2.11.0", False),
        ("3.13", "2.14.1", True),
    ],
)
def test_free_threaded_python(py, expect, torchvision):
    rec = rec_of(py=py, driver="580.65.06", gpus=["H100"])
    assert rec.action == "install" and rec.torch == expect
    assert ("torchvision==" in rec.pip) is torchvision
    if not torchvision:
        assert any("torchvision" in r and py in r for r in rec.reasons)


@pytest.mark.parametrize(
    "glibc,expect",
    [("2.17", "2.5.1"), ("2.27", "2.5.1"), ("2.28", "2.14.1"), ("2.39", "2.14.1")],
)
def test_glibc_minimum(glibc, expect):
    rec = rec_of(driver="580.65.06", gpus=["RTX 3090"], glibc=glibc)
    assert rec.torch == expect
    if expect != "2.14.1":
        assert any("glibc" in w for w in rec.warnings)


def test_glibc_is_not_checked_on_windows():
    assert rec_of(os="windows", glibc="2.17").torch == "2.14.1"


# --- the terminal rendering ---------------------------------------------------------------


def render(rec, width=40):
    console = Console(width=width, no_color=True, highlight=False, force_terminal=False)
    with console.capture() as cap:
        print_recommendation(rec, console)
    return cap.get()


@pytest.mark.parametrize(
    "kw",
    [
        dict(driver="550.54.14", gpus=["RTX 4090"]),
        dict(os="windows", driver="581.57", gpus=["RTX 4090"]),
        dict(gpus=["K40"]),
        dict(arch="aarch64", gpus=["Jetson AGX Orin"]),
    ],
)
def test_commands_are_never_wrapped(kw):
    rec = rec_of(**kw)
    out = render(rec, width=40)
    for cmd in filter(None, (rec.pip, rec.uv, rec.conda)):
        assert any(line.strip().endswith(cmd) for line in out.splitlines()), out
    for alt in rec.alternatives:
        assert any(line.strip() == alt.pip for line in out.splitlines()), out


def test_kepler_gets_no_orphaned_or_line():
    out = render(rec_of(driver="470.82.01", gpus=["K40"]), width=100)
    assert not any(line.strip().startswith("or ") for line in out.splitlines())
    assert "No PyTorch build fits" in out


def test_macos_arm64_is_not_told_to_install_a_cpu_build():
    out = render(rec_of(os="macos", arch="arm64", py="3.12"), width=100)
    assert "+cpu" not in out and "MPS" in out


def test_nothing_to_do_is_one_line():
    fits = recommend(
        machine(
            driver="580.65.06", gpus=["H100"], torch=InstalledTorch("2.14.1+cu130", "cu130", "13.0")
        ),
        table=TABLE,
    )
    assert fits.action == "none"
    out = render(fits, width=100).strip().splitlines()
    assert len(out) == 1 and "already fits" in out[0]


# --- input files of every kind, as bytes --------------------------------------------------


@settings(max_examples=max(40, FUZZ_EXAMPLES // 5), deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_as_compat_or_snapshot_exit_2(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "input"
    path.write_bytes(data)
    for flag in ("--compat", "--from-snapshot"):
        with pytest.raises(SystemExit) as exc:
            raise SystemExit(main(["recommend", "--os", "linux", flag, str(path), "--json"]))
        assert exc.value.code in (0, 1, 2)


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\x00\x00garbage", b"\x89PNG\r\n\x1a\n\x00\x00", '{"torch": "é"}'.encode("latin-1")],
)
def test_binary_compat_is_one_line_exit_2(tmp_path, capsys, data):
    path = tmp_path / "table.json"
    path.write_bytes(data)
    rc = main(["recommend", "--os", "linux", "--compat", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_jetson_with_torch_installed_is_not_judged_by_the_sbsa_table():
    m = machine(
        arch="aarch64", gpus=["Jetson AGX Orin"], torch=InstalledTorch("2.5.0a0+872d972e41.nv24.08")
    )
    rec = recommend(m, table=TABLE)
    assert rec.installed is not None and rec.installed.fits is None
    assert rec.pip is None and "not judged" in rec.reasons[0]


@pytest.mark.parametrize("cc", ["5.3", "6.2", "7.2", "8.7"])
def test_a_jetson_only_capability_is_a_jetson(cc):
    rec = rec_of(arch="aarch64", driver="540.4.0", gpus=[(None, cc)])
    assert rec.pip is None and any("JetPack" in r for r in rec.reasons)


@pytest.mark.parametrize("recorded,expect", [("sm_86", "8.6"), ("8.6.0", "8.6"), ("nine", None)])
def test_recorded_capability_forms(recorded, expect):
    from gpucheck.snapshot import Driver, Gpu, PythonInfo, Snapshot, System

    snap = Snapshot(
        system=System(os="linux", arch="x86_64", python=PythonInfo("3.11.7", "/x/python")),
        driver=Driver(version="580.65.06"),
        gpus=(Gpu(index=0, name="Some GPU", compute_capability=recorded),),
    )
    m = Machine.from_snapshot(snap, TABLE)
    assert m.gpus[0].compute_capability == expect
    rec = recommend(m, table=TABLE)
    assert (rec.action == "install") is (expect is not None)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.data())
def test_fuzz_mutated_compat_table_only_raises_compat_error(data):
    """A --compat table with any one value replaced loads or fails with CompatError, and a
    table that loads gives a recommendation without crashing."""
    import copy

    from gpucheck.compat import PARTS, CompatError, build_table

    parts = copy.deepcopy(TABLE.raw)
    part = data.draw(st.sampled_from(PARTS))
    node = parts[part]
    path = []
    while isinstance(node, (dict, list)) and node:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        k = data.draw(st.sampled_from(keys))
        path.append(k)
        if data.draw(st.booleans()):
            break
        node = node[k]
    leaf = st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.just([]), st.just({})
    )
    target = parts[part]
    for k in path[:-1]:
        target = target[k]
    if path:
        target[path[-1]] = data.draw(leaf)
    try:
        table = build_table(parts, origin="fuzz")
    except CompatError:
        return
    rec = recommend(machine(driver="580.65.06", gpus=["RTX 4090"]), table=table)
    assert rec.action in ("none", "install", "upgrade-driver", "change-python", "unsupported")


def test_macos_has_a_conda_forge_line():
    # conda-forge builds osx-64 and osx-arm64 (pytorch-cpu-feedstock .ci_support/osx_*)
    rec = rec_of(os="macos", arch="arm64", py="3.12")
    assert rec.conda == "conda install -c conda-forge pytorch-cpu python=3.12"
