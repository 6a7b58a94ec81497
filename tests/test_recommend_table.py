"""Table-driven: machines (driver x GPU x OS x Python) -> the expected build and command.

Every expectation follows from the sourced table (gpucheck/compat/*.json) through the policy in
docs/recommend.md; the comment on a case says why when it is not obvious.
"""

from __future__ import annotations

import pytest

from gpucheck.compat import load_table
from gpucheck.recommend import InstalledTorch, Machine, describe_gpu, recommend, recommend_findings

TABLE = load_table()
INDEX = "https://download.pytorch.org/whl/"


def machine(
    os="linux", arch="x86_64", py="3.11", driver=None, gpus=(), rocm=(), wsl=False, torch=None
):
    described = []
    for i, g in enumerate(gpus):
        name, cc = (g, None) if isinstance(g, str) else g
        described.append(describe_gpu(i, name, cc, TABLE))
    return Machine(
        os=os,
        arch=arch,
        python=py,
        driver=driver,
        gpus=tuple(described),
        rocm_archs=tuple(rocm),
        wsl=wsl,
        torch=torch,
    )


# id, machine kwargs, torch spec, action, variant, torch version, plain PyPI?
CASES = [
    # no GPU: the CPU index on Linux, never a bare `pip install torch` (a CUDA build there)
    ("linux-nogpu-py311", dict(), None, "install", "cpu", "2.14.1", False),
    ("linux-nogpu-py310", dict(py="3.10"), None, "install", "cpu", "2.14.1", False),
    ("linux-nogpu-py314", dict(py="3.14"), None, "install", "cpu", "2.14.1", False),
    ("linux-nogpu-py38", dict(py="3.8"), None, "install", "cpu", "2.4.1", False),
    ("linux-nogpu-py39", dict(py="3.9"), None, "install", "cpu", "2.8.0", False),
    ("linux-py37-too-old", dict(py="3.7"), None, "change-python", "cpu", "2.14.1", False),
    ("linux-py316-too-new", dict(py="3.16"), None, "change-python", "cpu", "2.14.1", False),
    # 3.15: confirmed only for 2.15 (PyPI metadata), whose cpu index is unconfirmed
    ("linux-py315", dict(py="3.15"), None, "install", "cpu", "2.15.0", False),
    # macOS: the PyPI wheel is the build (MPS on Apple silicon); x86_64 ended with 2.2
    (
        "macos-arm64",
        dict(os="macos", arch="arm64", py="3.12"),
        None,
        "install",
        "cpu",
        "2.14.1",
        True,
    ),
    ("macos-x86_64", dict(os="macos", arch="x86_64"), None, "install", "cpu", "2.2.2", True),
    (
        "macos-x86_64-py313",
        dict(os="macos", arch="x86_64", py="3.13"),
        None,
        "change-python",
        "cpu",
        "2.2.2",
        True,
    ),
    # Windows: PyPI is CPU-only, CUDA wheels come from the index; Windows driver minimums
    ("windows-nogpu", dict(os="windows", py="3.12"), None, "install", "cpu", "2.14.1", True),
    (
        "windows-4090-560",
        dict(os="windows", driver="560.94", gpus=["RTX 4090"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    # NVIDIA publishes no Windows full-feature minimum for CUDA 13.x: cu13x run only through
    # minor version compatibility there, so cu126 (full feature set met) wins within 2.14.1
    (
        "windows-4090-581",
        dict(os="windows", driver="581.57", gpus=["RTX 4090"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        False,
    ),
    (
        "windows-3090-528.33",
        dict(os="windows", driver="528.33", gpus=["RTX 3090"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    # 527.41 is below the conservative 12.x Windows floor (528.33): only cu118 is left, newest 2.7.1
    (
        "windows-3090-527.41",
        dict(os="windows", driver="527.41", gpus=["RTX 3090"]),
        None,
        "install",
        "cu118",
        "2.7.1",
        False,
    ),
    # Linux NVIDIA
    (
        "h100-580",
        dict(driver="580.65.06", gpus=["NVIDIA H100 80GB HBM3"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    (
        "h100-595",
        dict(driver="595.45.04", gpus=["H100"]),
        None,
        "install",
        "cu132",
        "2.14.1",
        False,
    ),
    (
        "h200-590",
        dict(driver="590.44.01", gpus=["NVIDIA H200"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    (
        "h100-550",
        dict(driver="550.54.14", gpus=["H100"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "h100-525.60.13",
        dict(driver="525.60.13", gpus=["H100"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "h100-525.60.12",
        dict(driver="525.60.12", gpus=["H100"]),
        None,
        "install",
        "cu118",
        "2.7.1",
        False,
    ),
    (
        "a100-570",
        dict(driver="570.26", gpus=["NVIDIA A100-SXM4-80GB"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "t4-535",
        dict(driver="535.104.05", gpus=["Tesla T4"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "l4-535",
        dict(driver="535.104.05", gpus=["NVIDIA L4"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "v100-580",
        dict(driver="580.65.06", gpus=["Tesla V100-SXM2-16GB"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    # the GTX 1080 Ti (sm_61) is never sent a build without sm_60/sm_61 (uv#14742)
    (
        "1080ti-580",
        dict(driver="580.65.06", gpus=["NVIDIA GeForce GTX 1080 Ti"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "1080ti-550",
        dict(driver="550.54.14", gpus=["GTX 1080 Ti"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    # RTX 5090 (sm_120) needs cu128 or newer
    (
        "5090-570",
        dict(driver="570.26", gpus=["NVIDIA GeForce RTX 5090"]),
        None,
        "install",
        "cu128",
        "2.11.0",
        False,
    ),
    (
        "5090-560",
        dict(driver="560.35.03", gpus=["RTX 5090"]),
        None,
        "upgrade-driver",
        "cu132",
        "2.14.1",
        False,
    ),
    (
        "5090-580",
        dict(driver="580.65.06", gpus=["RTX 5090"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    (
        "5090-520",
        dict(driver="520.61.05", gpus=["RTX 5090"]),
        None,
        "upgrade-driver",
        "cu132",
        "2.14.1",
        False,
    ),
    (
        "5090-cc-flag",
        dict(driver="580.65.06", gpus=[("Mystery GPU", "12.0")]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    (
        "b200-580",
        dict(driver="580.65.06", gpus=["NVIDIA B200"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    (
        "rtxpro6000-595",
        dict(driver="595.71.05", gpus=["NVIDIA RTX PRO 6000 Blackwell Workstation Edition"]),
        None,
        "install",
        "cu132",
        "2.14.1",
        False,
    ),
    (
        "3090-py38-535",
        dict(py="3.8", driver="535.104.05", gpus=["RTX 3090"]),
        None,
        "install",
        "cu121",
        "2.4.1",
        True,
    ),
    (
        "4090-470",
        dict(driver="470.82.01", gpus=["RTX 4090"]),
        None,
        "upgrade-driver",
        "cu132",
        "2.14.1",
        False,
    ),
    # driver too old for any wheel: say which driver, and what it gives
    (
        "v100-418",
        dict(driver="418.39", gpus=["V100"]),
        None,
        "upgrade-driver",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "k40-470",
        dict(driver="470.82.01", gpus=["Tesla K40m"]),
        None,
        "unsupported",
        None,
        None,
        None,
    ),
    # Linux aarch64, Grace Hopper
    (
        "gh200-580",
        dict(arch="aarch64", driver="580.82.07", gpus=["NVIDIA GH200 480GB"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    (
        "gh200-595",
        dict(arch="aarch64", driver="595.45.04", gpus=["GH200"]),
        None,
        "install",
        "cu132",
        "2.14.1",
        False,
    ),
    (
        "gh200-550",
        dict(arch="aarch64", driver="550.54.14", gpus=["GH200"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    ("aarch64-nogpu", dict(arch="aarch64"), None, "install", "cpu", "2.14.1", False),
    (
        "aarch64-arm64-alias",
        dict(arch="arm64", driver="580.82.07", gpus=["GH200"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    # WSL2: Linux wheels, Windows driver minimums
    (
        "wsl-4090-572",
        dict(driver="572.60", gpus=["RTX 4090"], wsl=True),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "wsl-4090-528.00",
        dict(driver="528.00", gpus=["RTX 4090"], wsl=True),
        None,
        "install",
        "cu118",
        "2.7.1",
        False,
    ),
    # AMD ROCm by gfx, Linux only
    ("mi300x", dict(gpus=["AMD Instinct MI300X"]), None, "install", "rocm7.2", "2.14.1", False),
    ("gfx1151-flag", dict(rocm=["gfx1151"]), None, "install", "rocm7.2", "2.14.1", False),
    ("mi250x", dict(gpus=["MI250X"]), None, "install", "rocm7.2", "2.14.1", False),
    ("gfx1030-lt210", dict(rocm=["gfx1030"]), "<2.10", "install", "rocm6.4", "2.9.1", False),
    ("gfx803-old", dict(rocm=["gfx803"]), None, "unsupported", None, None, None),
    (
        "amd-windows",
        dict(os="windows", gpus=["Radeon RX 7900 XTX"]),
        None,
        "unsupported",
        None,
        None,
        None,
    ),
    # Intel XPU
    (
        "intel-arc-linux",
        dict(gpus=["Intel(R) Arc(TM) A770 Graphics"]),
        None,
        "install",
        "xpu",
        "2.14.1",
        False,
    ),
    (
        "intel-arc-windows",
        dict(os="windows", gpus=["Arc B580"]),
        None,
        "install",
        "xpu",
        "2.14.1",
        False,
    ),
    ("intel-arc-py39", dict(py="3.9", gpus=["Arc A770"]), None, "install", "xpu", "2.8.0", False),
    # mixed GPUs
    (
        "h100+a100",
        dict(driver="580.65.06", gpus=["H100", "A100"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    (
        "v100+t4",
        dict(driver="580.65.06", gpus=["V100", "T4"]),
        None,
        "install",
        "cu126",
        "2.14.1",
        False,
    ),
    (
        "1080ti+5090",
        dict(driver="580.65.06", gpus=["GTX 1080 Ti", "RTX 5090"]),
        None,
        "install",
        "cu130",
        "2.14.1",
        True,
    ),
    # --torch constraints
    (
        "h100-550-torch25",
        dict(driver="550.54.14", gpus=["H100"]),
        "2.5.*",
        "install",
        "cu124",
        "2.5.1",
        True,
    ),
    (
        "4090-580-lt210",
        dict(driver="580.65.06", gpus=["RTX 4090"]),
        "<2.10",
        "install",
        "cu130",
        "2.9.1",
        False,
    ),
    ("nogpu-torch215", dict(), "2.15.*", "install", "cpu", "2.15.0", False),
    ("nogpu-torch113", dict(), "==1.13.*", "unsupported", None, None, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_machine(case):
    _id, kwargs, spec, action, variant, torch, plain = case
    rec = recommend(machine(**kwargs), table=TABLE, torch_spec=spec)
    d = rec.to_dict()
    assert (d["action"], d["variant"], d["torch"]) == (action, variant, torch), d["reasons"]
    assert d["reasons"] and all(isinstance(r, str) and "\n" not in r for r in d["reasons"])
    if variant is None:
        assert d["pip"] is None and d["index_url"] is None
        return
    assert d["pip"].startswith(f"pip install torch=={torch}")
    if plain:
        assert d["index_url"] is None and "--index-url" not in d["pip"]
    else:
        assert d["index_url"] == INDEX + variant
        assert d["pip"].endswith(f"--index-url {INDEX}{variant}")
    assert d["uv"].startswith("uv pip install")
    if d["conda"]:
        assert "conda-forge" in d["conda"] and "-c pytorch" not in d["conda"]
        assert "pytorch-cuda" not in d["conda"]
    if d["torchvision"]:
        assert f"torchvision=={d['torchvision']}" in d["pip"]


def test_gtx_1080_ti_never_gets_a_build_without_its_kernels():
    for driver in ("525.60.13", "550.54.14", "570.26", "580.65.06", "595.71.05"):
        rec = recommend(machine(driver=driver, gpus=["GTX 1080 Ti"]), table=TABLE)
        assert rec.variant == "cu126", (driver, rec.reasons)


def test_rtx_5090_gets_cu128_or_newer():
    for driver in ("525.60.13", "560.35.03", "570.26", "580.65.06", "595.45.04"):
        rec = recommend(machine(driver=driver, gpus=["RTX 5090"]), table=TABLE)
        assert rec.variant in ("cu128", "cu129", "cu130", "cu132"), (driver, rec.variant)


def test_driver_too_old_says_which_driver_and_what_it_gives():
    rec = recommend(machine(driver="418.39", gpus=["V100"]), table=TABLE)
    text = " ".join(rec.reasons)
    assert "install NVIDIA driver >= 560.28.03" in text
    assert "torch 2.14.1+cu126" in text
    assert "450.80.02" in text  # the smallest upgrade that gives anything
    assert rec.driver_required == "525.60.13" and rec.driver_full_feature == "560.28.03"


def test_python_too_new_and_too_old_name_the_python():
    assert recommend(machine(py="3.16"), table=TABLE).python_required == "3.14"
    assert recommend(machine(py="3.7"), table=TABLE).python_required == "3.10"


def test_mixed_gpus_say_which_one_cannot_be_served():
    rec = recommend(machine(driver="580.65.06", gpus=["GTX 1080 Ti", "RTX 5090"]), table=TABLE)
    warn = " ".join(rec.warnings)
    assert "GPU 0 GTX 1080 Ti" in warn and "CUDA_VISIBLE_DEVICES=1" in warn
    assert any("conda-forge" in r for r in rec.reasons)  # its CUDA 12.9 build has sm_60 and sm_120


def test_minor_version_compat_earns_a_note_not_a_downgrade():
    rec = recommend(machine(driver="550.54.14", gpus=["H100"]), table=TABLE)
    assert rec.variant == "cu126" and rec.torch == "2.14.1"
    assert any("minor version compatibility" in r for r in rec.reasons)


def test_wsl_reason_mentions_windows_driver():
    rec = recommend(machine(driver="572.60", gpus=["RTX 4090"], wsl=True), table=TABLE)
    assert any("WSL2" in r for r in rec.reasons)


def test_unconfirmed_newer_release_is_mentioned():
    rec = recommend(machine(), table=TABLE)
    assert any("2.15.0" in w for w in rec.warnings)


def test_k40_offers_the_cpu_build():
    rec = recommend(machine(driver="470.82.01", gpus=["K40"]), table=TABLE)
    assert rec.action == "unsupported"
    assert rec.alternatives and "whl/cpu" in rec.alternatives[0].pip
    assert any("sm_35" in r for r in rec.reasons)


# --- the installed torch -------------------------------------------------------------


def installed(version, local=None, cuda=None, arch_list=()):
    return InstalledTorch(version=version, local=local, cuda=cuda, arch_list=tuple(arch_list))


def test_installed_fits_action_none():
    m = machine(driver="580.65.06", gpus=["H100"], torch=installed("2.14.1+cu130", "cu130", "13.0"))
    rec = recommend(m, table=TABLE)
    assert rec.action == "none" and rec.installed.fits is True
    assert rec.torch == "2.14.1" and rec.variant == "cu130"
    assert recommend_findings(None, rec) == []


def test_this_machine_shape_cpu_torch_no_gpu():
    m = machine(torch=installed("2.13.0+cpu", "cpu"))
    rec = recommend(m, table=TABLE)
    assert rec.action == "none" and rec.variant == "cpu" and rec.index_url == INDEX + "cpu"
    assert any("2.14.1" in a.pip for a in rec.alternatives)


def test_installed_without_gpu_kernels_is_an_error_finding():
    m = machine(
        driver="580.65.06", gpus=["GTX 1080 Ti"], torch=installed("2.14.1+cu130", "cu130", "13.0")
    )
    rec = recommend(m, table=TABLE)
    assert rec.action == "install" and rec.variant == "cu126"
    (f,) = recommend_findings(None, rec)
    assert f.id == "GC502" and f.severity.value == "error"
    assert "sm_61" in f.evidence[0] and f.fix == rec.pip


def test_installed_needs_newer_driver_says_exactly_why():
    m = machine(driver="550.54.14", gpus=["H100"], torch=installed("2.15.0", None, "13.2"))
    m = m.replace(driver_cuda="12.4")
    rec = recommend(m, table=TABLE)
    findings = recommend_findings(None, rec)
    assert [f.id for f in findings] == ["GC501"]
    assert findings[0].evidence[0] == (
        "torch 2.15.0 needs driver >= 580; this driver is 550.54.14 (CUDA 12.4)"
    )
    assert rec.variant == "cu126"
    # When diagnose already reported the same problem (GC203), it is not reported twice.
    assert recommend_findings(None, rec, already={"GC203"}) == []
    assert [f.id for f in recommend_findings(None, rec, already={"GC205"})] == ["GC501"]


def test_installed_measured_arch_list_wins_over_table():
    m = machine(
        driver="580.65.06",
        gpus=["GTX 1080 Ti"],
        torch=installed("2.14.1+cu126", "cu126", "12.6", ["sm_75", "sm_80"]),
    )
    rec = recommend(m, table=TABLE)
    assert rec.installed.fits is False
    assert [f.id for f in recommend_findings(None, rec)] == ["GC502"]


def test_cpu_torch_on_gpu_box_is_not_a_gc5xx_finding():
    m = machine(driver="580.65.06", gpus=["H100"], torch=installed("2.13.0+cpu", "cpu"))
    rec = recommend(m, table=TABLE)
    assert rec.action == "install" and rec.variant == "cu130"
    assert recommend_findings(None, rec) == []


def test_rocm_torch_on_nvidia_box():
    m = machine(driver="580.65.06", gpus=["H100"], torch=installed("2.13.0+rocm7.2", "rocm7.2"))
    rec = recommend(m, table=TABLE)
    assert [f.id for f in recommend_findings(None, rec)] == ["GC504"]


def test_mixed_gpus_partial_installed_is_a_warning():
    m = machine(
        driver="580.65.06",
        gpus=["GTX 1080 Ti", "RTX 4090"],
        torch=installed("2.14.1+cu130", "cu130", "13.0"),
    )
    rec = recommend(m, table=TABLE)
    (f,) = recommend_findings(None, rec)
    assert f.id == "GC505" and f.severity.value == "warn"


def test_torch_spec_excludes_installed():
    m = machine(torch=installed("2.13.0+cpu", "cpu"))
    rec = recommend(m, table=TABLE, torch_spec="2.12.*")
    assert rec.action == "install" and rec.torch == "2.12.1"


def test_bad_torch_spec_raises_value_error():
    with pytest.raises(ValueError):
        recommend(machine(), table=TABLE, torch_spec="~~nope")


def test_amd_machine_from_a_snapshot_gets_rocm():
    # What the probe reads from /sys/class/kfd on an MI300X box, with no NVIDIA GPU.
    from gpucheck.snapshot import PythonInfo, Snapshot, System

    snap = Snapshot(
        system=System(
            os="linux",
            arch="x86_64",
            python=PythonInfo("3.11.7", "/usr/bin/python3"),
            amd_gfx=("gfx942", "gfx942"),
        )
    )
    rec = recommend(snap, table=TABLE)
    assert rec.variant and rec.variant.startswith("rocm"), rec.to_dict()
    assert rec.index_url == f"https://download.pytorch.org/whl/{rec.variant}"
