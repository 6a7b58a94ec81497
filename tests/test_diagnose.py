"""diagnose(): the exact findings for every recorded snapshot, plus focused tests per rule."""

from __future__ import annotations

import pathlib
import re
from dataclasses import replace
from pathlib import Path

import pytest
from factories import ARCH
from fixtures import make_snapshots as mk
from hypothesis import given
from hypothesis import strategies as st

from gpucheck.diagnose import RULES, all_ids, declare, diagnose, facts, rule
from gpucheck.findings import Severity
from gpucheck.snapshot import (
    DeviceNode,
    Driver,
    Gpu,
    LibDir,
    Library,
    Snapshot,
    System,
    Torch,
    TorchDevice,
    TorchRuntime,
)

HERE = Path(__file__).resolve().parent
SNAPSHOTS = HERE / "fixtures" / "snapshots"
ROOT = HERE.parent

E, W, I = "error", "warn", "info"  # noqa: E741

# fixture -> the exact (id, severity, gpu) of every finding
EXPECTED: dict[str, set[tuple[str, str, int | None]]] = {
    "healthy_h100_x8": {("GC210", I, None)},
    "rtx4090_consumer": {("GC308", I, 0), ("GC310", I, 0)},
    "gtx1080ti_pascal": {("GC205", E, 0), ("GC204", I, None), ("GC308", I, 0), ("GC310", I, 0)},
    "laptop_rtx3050": {("GC204", I, None), ("GC307", I, 0), ("GC310", I, 0)},
    "no_driver": {("GC102", E, None), ("GC201", I, None)},
    "driver_mismatch": {("GC105", E, None)},
    "wsl2": {("GC111", E, None)},
    "container_no_gpus": {("GC107", E, None), ("GC112", W, None)},
    "mig_a100": {("GC309", I, 0)},
    "cpu_torch_on_gpu_box": {("GC202", E, None)},
    "torch_newer_than_driver": {("GC203", E, None)},
    "this_machine": {("GC101", I, None), ("GC210", I, None)},
    "nouveau": {("GC104", E, None), ("GC201", I, None)},
    "visible_devices_bad": {("GC109", E, None)},
    "ecc_errors": {("GC302", E, 0), ("GC304", W, 0), ("GC305", E, 1)},
    "retired_pages_v100": {("GC303", W, 2), ("GC303", E, 3)},
    "throttled": {("GC306", W, 1), ("GC307", I, 3)},
    "pcie_degraded_under_load": {("GC308", W, 0)},
    "small_shm": {("GC112", W, None)},
    "ld_library_path_shadow": {("GC209", W, None), ("GC211", E, None)},
    "multi_cudnn": {("GC207", W, None), ("GC208", W, None), ("GC209", W, None)},
    "torch_child_timeout": {("GC212", E, None)},
    "torch_import_error": {("GC211", E, None), ("GC206", W, None)},
    "torch_child_crash": {("GC213", E, None)},
    "gpu_lost_one_of_four": {("GC301", E, 2)},
    "cuda_unavailable_uvm": {("GC114", E, None)},
    "cuda_unavailable": {("GC214", E, None)},
    "matmul_mismatch": {("GC215", E, 1)},
    "driver_not_loaded": {("GC103", E, None)},
    "nvml_missing": {("GC106", E, None), ("GC201", I, None)},
    "device_nodes_unreadable": {("GC108", E, None)},
    "torch_not_installed": {("GC201", W, None)},
    # issue 9: each fixture below gave a wrong verdict before its fix
    "mig_a100_no_instances": {("GC309", W, 0)},  # was GC309 + an unrelated GC214
    "slurm_restricted_gpus": {("GC312", I, None)},  # was GC301 "fallen off the bus" x6
    "tf32_forced_h100": set(),  # the child's exact-input check: no GC215 under forced TF32
    "uvm_node_created_by_cuda": set(),  # was GC114 although CUDA initialised
    "cuda_order_differs": {("GC215", E, 0)},  # cuda:1 is NVML GPU 0 (was gpu=1)
    "jetson_orin": {("GC115", I, None)},  # was GC101 "no NVIDIA GPU" while torch ran on it
}


def load(name: str) -> Snapshot:
    return Snapshot.from_json((SNAPSHOTS / f"{name}.json").read_text())


def found(s: Snapshot) -> set[tuple[str, str, int | None]]:
    return {(f.id, f.severity.value, f.gpu) for f in diagnose(s)}


def ids(s: Snapshot) -> set[str]:
    return {f.id for f in diagnose(s)}


def sev(s: Snapshot, fid: str) -> str | None:
    hits = [f.severity.value for f in diagnose(s) if f.id == fid]
    assert len(hits) <= 1, hits
    return hits[0] if hits else None


# --- the recorded snapshots -------------------------------------------------------------------


def test_every_fixture_has_an_expectation():
    on_disk = {p.stem for p in SNAPSHOTS.glob("*.json")}
    assert on_disk == set(EXPECTED) == set(mk.FIXTURES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_findings(name):
    assert found(load(name)) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_json_matches_generator(name):
    """The JSON on disk is what make_snapshots.py builds (rerun it after editing)."""
    built = mk.FIXTURES[name]()
    assert load(name) == built
    assert Snapshot.from_json(built.to_json()) == built


def test_healthy_machine_has_no_error_or_warning():
    assert all(
        f.severity in (Severity.INFO, Severity.OK) for f in diagnose(load("healthy_h100_x8"))
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_are_complete_and_stable(name):
    s = load(name)
    first = diagnose(s)
    assert diagnose(s) == first  # pure: same input, same output
    assert s == load(name)  # and the snapshot is untouched
    for f in first:
        assert re.fullmatch(r"GC[1-3]\d\d", f.id)
        assert f.title and f.evidence and f.fix, f
        assert all(isinstance(e, str) and e for e in f.evidence)


def _rule_ids() -> set[str]:
    return {i for r in RULES for i in r.ids}


def test_every_rule_id_is_tested():
    in_fixtures = {i for exp in EXPECTED.values() for i, _, _ in exp}
    focused = {"GC110", "GC113", "GC311"}  # covered by the focused tests below
    focused |= {"GC216"}  # tests/test_bootstrap.py (torch/torchvision pairs)
    in_code = _rule_ids()
    assert in_code <= in_fixtures | focused, in_code - in_fixtures - focused


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_rule_emits_only_the_ids_it_declares(name):
    s = load(name)
    for r in RULES:
        assert {f.id for f in r(s)} <= set(r.ids), r.__name__


def test_no_finding_id_in_the_source_escapes_the_registry():
    # A guard on the registry itself: an id written anywhere in gpucheck/ must be declared.
    in_source = set()
    for path in (ROOT / "gpucheck").rglob("*.py"):
        in_source |= set(re.findall(r'"(GC\d{3})"', path.read_text()))
    assert in_source <= set(all_ids()), in_source - set(all_ids())


def test_rule_requires_ids():
    with pytest.raises(TypeError):
        rule(lambda s: ())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        declare("GX1", where="test")


# --- helpers for focused tests ----------------------------------------------------------------


def with_env(s: Snapshot, **env: str) -> Snapshot:
    return replace(s, system=replace(s.system, env={**s.system.env, **env}))


def with_gpu(s: Snapshot, index: int = 0, **kw) -> Snapshot:
    gs = list(s.gpus)
    gs[index] = replace(gs[index], **kw)
    return replace(s, gpus=tuple(gs))


HEALTHY = "healthy_h100_x8"


# --- compute capability and arch lists (GC205) -----------------------------------------------


@pytest.mark.parametrize(
    "cc, archs, expect",
    [
        ((8, 9), ["sm_80", "sm_86"], "cubin"),  # same major, higher minor runs the sm_86 cubin
        ((8, 0), ["sm_86"], None),  # lower minor cannot
        ((6, 1), ["sm_60"], "cubin"),  # Pascal GTX 10xx runs sm_60
        ((6, 1), ["sm_75", "sm_80", "sm_120"], None),
        ((7, 0), ["sm_75"], None),
        ((12, 1), ["sm_120"], "cubin"),  # GB10 runs sm_120 cubins
        ((10, 0), ["sm_90", "compute_90"], "ptx"),  # PTX JIT for anything newer
        ((8, 9), ["sm_75", "compute_120"], None),  # PTX never runs on an older GPU
        ((9, 0), ["compute_90"], "ptx"),
        ((9, 0), ["sm_90a"], "cubin"),  # arch-specific cubin: exactly 9.0
        ((10, 0), ["sm_90a"], None),
        ((12, 0), ["sm_100", "sm_120", "compute_120"], "cubin"),
        ((7, 5), ["junk", "sm_75"], "cubin"),
    ],
)
def test_arch_runs(cc, archs, expect):
    assert facts.arch_runs(cc, archs) == expect


def test_parse_arch():
    assert facts.parse_arch("sm_100") == facts.Arch("sm", (10, 0))
    assert facts.parse_arch("compute_120") == facts.Arch("compute", (12, 0))
    assert facts.parse_arch("sm_90a").exact
    assert facts.parse_arch("gfx90a") is None
    assert facts.min_arch(["sm_75", "sm_120", "compute_120"]) == (7, 5)


def test_arch_rule_too_old_vs_no_kernels():
    pascal = load("gtx1080ti_pascal")
    [f] = [f for f in diagnose(pascal) if f.id == "GC205"]
    assert "too old" in f.title and "sm_61" in f.title and "cu126" in f.fix
    # A Blackwell card on a build without sm_120 / PTX: "no kernels", not "too old".
    rt = pascal.torch_runtime
    blackwell = replace(
        with_gpu(pascal, name="NVIDIA GeForce RTX 5090", compute_capability="12.0"),
        torch_runtime=replace(rt, arch_list=ARCH["2.6.0+cu124"]),
    )
    [f] = [f for f in diagnose(blackwell) if f.id == "GC205"]
    assert "no kernels" in f.title and "sm_120" in f.title


def test_arch_rule_passes_with_ptx():
    rt = load("gtx1080ti_pascal").torch_runtime
    s = replace(
        load("gtx1080ti_pascal"), torch_runtime=replace(rt, arch_list=("sm_75", "compute_60"))
    )
    assert "GC205" not in ids(s)


def test_arch_rule_without_child_uses_release_matrix():
    """Static only (no torch child): torch 2.13 cu130 has no sm_61 -> a warning, not an error."""
    s = load("gtx1080ti_pascal")
    t = replace(s.torch, version="2.13.0+cu130", local="cu130", cuda="13.0")
    s = replace(
        s,
        torch=t,
        torch_runtime=None,
        driver=replace(s.driver, version="580.95.05", cuda_version="13.0"),
    )
    [f] = [f for f in diagnose(s) if f.id == "GC205"]
    assert f.severity is Severity.WARN and "release matrix" in " ".join(f.evidence)
    # cu126 of the same release has sm_60, which a 6.1 GPU runs.
    s126 = replace(s, torch=replace(t, version="2.13.0+cu126", local="cu126", cuda="12.6"))
    assert "GC205" not in ids(s126)


# --- driver vs torch CUDA (GC203 / GC204) ------------------------------------------------------


def fit(drv: str | None, drv_cuda: str | None, torch_cuda: str, os_name: str = "linux") -> str:
    s = load(HEALTHY)
    s = replace(
        s,
        system=replace(s.system, os=os_name),
        driver=Driver(version=drv, cuda_version=drv_cuda),
        torch=replace(s.torch, cuda=torch_cuda),
    )
    f = facts.driver_fit(s)
    assert f is not None
    return f.verdict


@pytest.mark.parametrize(
    "drv, drv_cuda, torch_cuda, verdict",
    [
        ("550.54.14", "12.4", "12.4", "full"),
        ("570.133.20", "12.8", "12.6", "full"),
        ("525.60.13", "12.0", "12.8", "mvc"),  # exactly the 12.x floor
        ("525.60.12", "12.0", "12.8", "too-old"),  # one patch below it
        ("535.183.01", "12.2", "12.8", "mvc"),
        ("575.57.08", "12.9", "13.0", "too-old"),  # newer major: never through MVC
        ("580.65.06", "13.0", "13.0", "full"),
        ("580.95.05", "13.0", "13.2", "mvc"),  # 13.x floor is 580
        ("470.256.02", "11.4", "12.4", "too-old"),
        ("450.80.02", "11.0", "11.8", "mvc"),  # 11.x floor
        ("450.51.06", "11.0", "11.8", "too-old"),
        ("535.183.01", None, "12.2", "full"),  # CUDA derived from the driver table
        ("535.183.01", None, "12.4", "mvc"),
    ],
)
def test_driver_fit_boundaries(drv, drv_cuda, torch_cuda, verdict):
    assert fit(drv, drv_cuda, torch_cuda) == verdict


def test_driver_fit_windows_floor_is_conservative():
    assert fit("528.33", "12.0", "12.8", "windows") == "mvc"
    assert fit("527.41", "12.0", "12.8", "windows") == "too-old"


def test_driver_tables():
    assert facts.max_cuda_for_driver("535.183.01", "linux") == (12, 2)
    assert facts.max_cuda_for_driver("570.133.20", "linux") == (12, 8)
    assert facts.max_cuda_for_driver("580.65.06", "linux") == (13, 0)
    assert facts.max_cuda_for_driver("418.39", "linux") is None
    assert facts.ga_driver_min((12, 7), "linux") == "560.28.03"  # no 12.7: nearest older
    assert facts.mvc_floor(12, "linux") == "525.60.13"


def test_mvc_warns_when_a_gpu_needs_ptx():
    s = load("gtx1080ti_pascal")
    rt = s.torch_runtime
    s = replace(
        with_gpu(s, name="NVIDIA B200", compute_capability="10.0"),
        torch_runtime=replace(rt, arch_list=("sm_80", "sm_90", "compute_90"), devices=()),
    )
    assert sev(s, "GC204") == W
    assert "GC205" not in ids(s)


def test_too_old_driver_suppresses_generic_cuda_unavailable():
    s = load("torch_newer_than_driver")
    assert "GC203" in ids(s) and "GC214" not in ids(s)


# --- CUDA_VISIBLE_DEVICES (GC109 / GC110) ------------------------------------------------------


def cvd(value: str, snapshot: str = HEALTHY) -> set[str]:
    return ids(with_env(load(snapshot), CUDA_VISIBLE_DEVICES=value)) & {"GC109", "GC110"}


def test_visible_devices_valid_values():
    s = load(HEALTHY)
    uuid = s.gpus[3].uuid
    assert uuid is not None
    assert cvd("0,1,7") == set()
    assert cvd("3,0") == set()
    assert cvd(uuid) == set()
    assert cvd(uuid[:12]) == set()  # unique prefix including "GPU-"
    assert cvd(f"{uuid},0") == set()


@pytest.mark.parametrize(
    "value", ["", " ", "-1", "8", "NoDevFiles", "GPU-deadbeef", "MIG-1234", "9,0"]
)
def test_visible_devices_hide_everything(value):
    assert cvd(value) == {"GC109"}


@pytest.mark.parametrize("value", ["0,8", "0,1,GPU-deadbeef,2", "0,0", "1,-1"])
def test_visible_devices_partly_invalid(value):
    assert cvd(value) == {"GC110"}


def test_visible_devices_mig():
    s = load("mig_a100")
    mig = s.gpus[0].mig_devices
    assert mig
    assert cvd(mig[1], "mig_a100") == set()
    assert cvd("MIG-00000000-0000-0000-0000-000000000000", "mig_a100") == {"GC109"}
    # MIG devices not probed: a MIG- UUID cannot be judged, so no finding
    unknown = with_gpu(s, mig_devices=None)
    assert ids(with_env(unknown, CUDA_VISIBLE_DEVICES="MIG-anything")) & {"GC109", "GC110"} == set()


def test_visible_devices_evidence():
    s = with_env(load(HEALTHY), CUDA_VISIBLE_DEVICES="0,1,9,2")
    v = facts.cuda_visible_devices(s)
    assert v is not None
    assert v.visible == ("0", "1") and v.dropped == ("9", "2")
    [f] = [f for f in diagnose(s) if f.id == "GC110"]
    assert "ignores 9, 2" in " ".join(f.evidence)


@given(st.text(alphabet="0123456789,-GPUMIabcdef ", max_size=20))
def test_visible_devices_never_crash_and_keep_a_prefix(value):
    s = with_env(load(HEALTHY), CUDA_VISIBLE_DEVICES=value)
    v = facts.cuda_visible_devices(s)
    assert v is not None
    entries = [e.strip() for e in value.split(",")] if value.strip() else []
    assert list(v.visible) + list(v.dropped) == entries
    diagnose(s)


@given(
    st.from_regex(r"[1-9][0-9]{2}\.[0-9]{1,3}(\.[0-9]{2})?", fullmatch=True),
    st.sampled_from(["11.8", "12.1", "12.4", "12.6", "12.8", "12.9", "13.0", "13.2"]),
)
def test_driver_fit_is_monotonic(drv, torch_cuda):
    """A newer driver never fits worse than an older one."""
    rank = {"too-old": 0, "unknown": 0, "mvc": 1, "full": 2}
    older = fit(drv, None, torch_cuda)
    major = int(drv.split(".")[0])
    newer = fit(f"{major + 1}.0", None, torch_cuda)
    assert rank[newer] >= rank[older]


# --- driver, NVML, system ------------------------------------------------------------------------


def test_version_mismatch_from_versions_alone():
    s = load(HEALTHY)
    s = replace(
        s,
        driver=replace(
            s.driver, kernel_module_version="570.124.06", nvml_library_version="12.570.133.20"
        ),
    )
    assert "GC105" in ids(s)
    assert facts.driver_core("12.550.120") == (550, 120)
    assert facts.driver_core("550.54.14") == (550, 54, 14)


def test_version_mismatch_in_container_gives_container_fix():
    s = load("driver_mismatch")
    s = replace(s, system=replace(s.system, container="docker"))
    [f] = [f for f in diagnose(s) if f.id == "GC105"]
    assert "--gpus all" in (f.fix or "")


def test_nvml_other_error():
    s = replace(
        load("driver_mismatch"),
        driver=Driver(nvml_error="Unknown", kernel_module_version="550.90.07"),
    )
    assert sev(s, "GC113") == E
    assert "GC105" not in ids(s)


def test_container_without_gpus_on_cpu_host_is_only_a_note():
    s = load("container_no_gpus")
    s = replace(
        s,
        driver=Driver(nvml_error="LibraryNotFound"),
        system=replace(s.system, nvidia_module_loaded=False),
    )
    assert {"GC101", "GC107"} & ids(s) == {"GC101"}
    # ... unless the image asks for GPUs
    assert "GC107" in ids(with_env(s, NVIDIA_VISIBLE_DEVICES="all"))
    assert "GC107" not in ids(with_env(s, NVIDIA_VISIBLE_DEVICES="void"))


def test_device_nodes_missing_on_host():
    s = load(HEALTHY)
    s = replace(s, gpus=(), system=replace(s.system, device_nodes=()), torch_runtime=None)
    assert "GC108" in ids(s)
    [f] = [f for f in diagnose(s) if f.id == "GC108"]
    assert "nvidia-modprobe" in (f.fix or "")


def test_uvm_rule_not_on_wsl_or_without_nodes():
    s = load("cuda_unavailable_uvm")
    assert "GC114" not in ids(replace(s, system=replace(s.system, wsl=True)))
    assert "GC114" not in ids(replace(s, system=replace(s.system, device_nodes=())))


def test_nouveau_next_to_working_nvidia_is_a_warning():
    s = load(HEALTHY)
    assert sev(replace(s, system=replace(s.system, nouveau_loaded=True)), "GC104") == W


def test_driver_not_loaded_in_wsl_without_linux_driver():
    s = load("wsl2")
    s = replace(s, system=replace(s.system, linux_driver_in_wsl=()))
    [f] = [f for f in diagnose(s) if f.id == "GC103"]
    assert "Windows" in (f.fix or "")


@pytest.mark.parametrize(
    "shm, expect",
    [
        (
            64 * 2**20,
            {"GC112"},
        ),
        (2**30 - 1, {"GC112"}),
        (2**30, set()),
    ],
)
def test_small_shm_threshold(shm, expect):
    s = load("small_shm")
    assert ids(replace(s, system=replace(s.system, shm_bytes=shm))) & {"GC112"} == expect


def test_small_shm_only_in_containers():
    s = load("small_shm")
    assert "GC112" not in ids(replace(s, system=replace(s.system, container=None)))


# --- torch ---------------------------------------------------------------------------------------


def test_torch_missing_is_info_without_gpu_and_warn_with_one():
    assert sev(load("torch_not_installed"), "GC201") == W
    assert sev(load("no_driver"), "GC201") == I


def test_rocm_torch_on_nvidia_box():
    s = load("cpu_torch_on_gpu_box")
    rocm = Torch(
        True, "2.6.0+rocm6.2.4", "rocm6.2.4", None, hip="6.2.41133", source="importlib.metadata"
    )
    s = replace(s, torch=rocm, torch_runtime=None)
    [f] = [f for f in diagnose(s) if f.id == "GC202"]
    assert "ROCm" in f.title


def test_cpu_torch_from_static_metadata_only():
    s = replace(load("cpu_torch_on_gpu_box"), torch_runtime=None)
    s = replace(s, torch=replace(s.torch, local=None))  # "2.6.0" with torch.version.cuda None
    assert "GC202" in ids(s)


def test_cudnn_not_loaded_by_child():
    s = load(HEALTHY)
    s = replace(s, torch_runtime=replace(s.torch_runtime, cudnn_version=None, cudnn_path=None))
    assert sev(s, "GC206") == E


def test_several_cudnn_is_a_note_when_torch_uses_its_wheel():
    s = load(HEALTHY)
    extra = Library("cudnn", "8.9.7", "/usr/lib/x86_64-linux-gnu/libcudnn.so.8.9.7", "ldconfig")
    s = replace(s, cuda=replace(s.cuda, libraries=s.cuda.libraries + (extra,)))
    assert sev(s, "GC207") == I
    assert "GC208" not in ids(s)


def test_ld_library_path_ignored_for_conda_torch_and_driver_libs():
    s = load("ld_library_path_shadow")
    conda = replace(s.torch, local=None, nvidia_wheels=())
    assert "GC209" not in ids(replace(s, torch=conda, torch_runtime=None))
    only_driver = replace(
        s.system,
        ld_library_path=(LibDir("/usr/local/nvidia/lib64", ("libcuda.so.1", "libnvidia-ml.so.1")),),
    )
    assert "GC209" not in ids(replace(s, system=only_driver))


def test_ld_library_path_fix_keeps_other_entries():
    [f] = [f for f in diagnose(load("ld_library_path_shadow")) if f.id == "GC209"]
    assert "`export LD_LIBRARY_PATH=/usr/local/lib`" in (f.fix or "")


def test_toolkit_note_says_not_to_add_it_to_ld_library_path():
    [f] = [f for f in diagnose(load("this_machine")) if f.id == "GC210"]
    assert "/usr/local/cuda-13.0" in " ".join(f.evidence)
    assert "Do NOT add /usr/local/cuda-13.0/lib64 to LD_LIBRARY_PATH" in (f.fix or "")


def test_toolkit_note_flags_major_mismatch():
    s = load(HEALTHY)
    tk = replace(s.cuda.toolkits[0], version="13.0", path="/usr/local/cuda-13.0")
    [f] = [f for f in diagnose(replace(s, cuda=replace(s.cuda, toolkits=(tk,)))) if f.id == "GC210"]
    assert "differs from torch's 12.x" in " ".join(f.evidence)


def test_toolkit_note_skipped_for_conda_torch():
    s = load(HEALTHY)
    conda = replace(s.torch, version="2.13.0", local=None, nvidia_wheels=())
    assert "GC210" not in ids(
        replace(s, torch=conda, torch_runtime=replace(s.torch_runtime, version="2.13.0"))
    )


@pytest.mark.parametrize(
    "error, title",
    [
        ("ImportError: libcudnn_graph.so.9: cannot open shared object file", "cuDNN"),
        (
            "ImportError: libcublasLt.so.12: cannot open shared object file: No such file",
            "shared library is missing",
        ),
        ("undefined symbol: cudnnGetLibConfig, version libcudnn.so.9", "undefined symbol"),
        ("ModuleNotFoundError: No module named 'typing_extensions'", "import torch fails"),
    ],
)
def test_import_error_kinds(error, title):
    s = replace(
        load(HEALTHY), torch_runtime=TorchRuntime(status="import-error", error=error, returncode=1)
    )
    [f] = [f for f in diagnose(s) if f.id == "GC211"]
    assert title in f.title


def test_crash_by_sigkill_points_at_oom():
    s = replace(load(HEALTHY), torch_runtime=TorchRuntime(status="crash", returncode=-9))
    [f] = [f for f in diagnose(s) if f.id == "GC213"]
    assert "SIGKILL" in f.title and "oom" in (f.fix or "").lower()


def test_device_error_reported_when_arch_does_not_explain_it():
    s = load(HEALTHY)
    rt = s.torch_runtime
    dev = replace(
        rt.devices[5], matmul_ok=None, error="CUDA error: an illegal memory access was encountered"
    )
    devices = rt.devices[:5] + (dev,) + rt.devices[6:]
    s = replace(s, torch_runtime=replace(rt, devices=devices))
    assert found(s) - EXPECTED[HEALTHY] == {("GC215", E, 5)}


def test_cuda_unavailable_not_repeated_when_another_rule_explains_it():
    assert "GC214" not in ids(load("visible_devices_bad"))
    assert "GC214" not in ids(load("cpu_torch_on_gpu_box"))
    assert "GC214" not in ids(load("cuda_unavailable_uvm"))


# --- health ------------------------------------------------------------------------------------


def test_lost_gpu_reset_required():
    s = with_gpu(load(HEALTHY), 4, error="ResetRequired")
    [f] = [f for f in diagnose(s) if f.id == "GC301"]
    assert f.gpu == 4 and "nvidia-smi -r -i 4" in (f.fix or "")


def test_ecc_aggregate_alone_is_not_reported():
    s = with_gpu(load(HEALTHY), 0, ecc_uncorrected_aggregate=5, ecc_uncorrected_volatile=0)
    assert "GC302" not in ids(s)


@pytest.mark.parametrize("sbe, dbe, expect", [(10, 4, None), (10, 5, W), (0, 15, W), (30, 30, E)])
def test_retired_page_limits(sbe, dbe, expect):
    s = with_gpu(load("retired_pages_v100"), 0, retired_pages_sbe=sbe, retired_pages_dbe=dbe)
    got = {f.severity.value for f in diagnose(s) if f.id == "GC303" and f.gpu == 0}
    assert got == ({expect} if expect else set())


@pytest.mark.parametrize(
    "reasons, util, expect",
    [
        (("gpu_idle",), 0, set()),
        (("applications_clocks_setting", "display_clock_setting", "sync_boost"), 90, set()),
        (("sw_power_cap",), 5, set()),  # power cap reading at idle: ignored
        (("sw_power_cap",), None, {("GC307", I)}),
        (("sw_power_cap",), 80, {("GC307", I)}),
        (("hw_power_brake_slowdown",), 80, {("GC306", W)}),
        (("sw_power_cap", "hw_slowdown"), 80, {("GC306", W)}),
        (("sw_thermal_slowdown",), 10, {("GC306", W)}),
    ],
)
def test_throttle_reasons(reasons, util, expect):
    s = with_gpu(load(HEALTHY), 0, clock_event_reasons=reasons, utilization_percent=util)
    got = {(f.id, f.severity.value) for f in diagnose(s) if f.id in ("GC306", "GC307")}
    assert got == expect


@pytest.mark.parametrize(
    "gen, width, util, expect",
    [
        (5, 16, 100, set()),
        (1, 16, 0, {I}),  # idle downshift: a note only
        (4, 16, 49, {I}),
        (4, 16, 50, {W}),
        (5, 8, 90, {W}),  # width alone counts
        (None, None, 90, set()),  # unknown: nothing to judge
    ],
)
def test_pcie_link(gen, width, util, expect):
    s = with_gpu(
        load(HEALTHY), 0, pcie_gen_current=gen, pcie_width_current=width, utilization_percent=util
    )
    assert {f.severity.value for f in diagnose(s) if f.id == "GC308"} == expect


def test_pcie_idle_note_says_why():
    [f] = [f for f in diagnose(load("rtx4090_consumer")) if f.id == "GC308"]
    assert "idle by design" in (f.fix or "") and "under load" in (f.fix or "")


def test_mig_without_instances():
    s = with_gpu(load("mig_a100"), 0, mig_devices=())
    assert sev(s, "GC309") == W


def test_mig_fix_names_a_mig_uuid():
    [f] = [f for f in diagnose(load("mig_a100")) if f.id == "GC309"]
    assert "CUDA_VISIBLE_DEVICES=MIG-" in (f.fix or "")


def test_persistence_grouped_and_linux_only():
    s = load(HEALTHY)
    s = replace(s, gpus=tuple(replace(g, persistence_mode=False) for g in s.gpus))
    [f] = [f for f in diagnose(s) if f.id == "GC310"]
    assert (
        f.gpu is None
        and "0, 1, 2, 3, 4, 5, 6, 7" in f.title
        and "nvidia-smi -pm 1" in (f.fix or "")
    )
    assert "GC310" not in ids(replace(s, system=replace(s.system, os="windows")))


def test_compute_mode():
    assert sev(with_gpu(load(HEALTHY), 2, compute_mode="prohibited"), "GC311") == E
    assert sev(with_gpu(load(HEALTHY), 2, compute_mode="exclusive_process"), "GC311") == I


# --- robustness ------------------------------------------------------------------------------------


def test_minimal_snapshots_do_not_crash():
    bare = Snapshot(system=System(os="linux", arch="x86_64"))
    assert {f.id for f in diagnose(bare)} == {"GC101", "GC201"}
    odd = Snapshot(
        system=System(os="linux", arch="aarch64", device_nodes=(DeviceNode("/dev/nvidia0", True),)),
        driver=Driver(version="not-a-version", cuda_version="x"),
        gpus=(Gpu(index=0, compute_capability="?", pcie_gen_current=1),),
        torch=Torch(installed=True, version="2.9.0", cuda="weird"),
        torch_runtime=TorchRuntime(
            status="ok", cuda_available=False, devices=(TorchDevice(0, error=""),)
        ),
    )
    diagnose(odd)
    macos = Snapshot(
        system=System(os="macos", arch="arm64"), torch=Torch(True, "2.9.0", None, None)
    )
    assert {f.id for f in diagnose(macos)} == {"GC101"}


# Snapshots dumped by `gpucheck --dump-snapshot` on real machines (not generated): what a real
# probe wrote must keep loading and keep giving the same findings.
RECORDED: dict[str, set[tuple[str, str, int | None]]] = {
    # the project's development machine, 2026-11-28: no GPU, no driver, CUDA 13.0 toolkit,
    # torch 2.13.0+cpu imported by the child
    "dev_machine_no_gpu": {("GC101", I, None), ("GC210", I, None)},
    # a lent H200 (Firecracker VM, driver 580.159.04, torch 2.11.0+cu130, CUDA 13.0 toolkit,
    # a system cuDNN 9.14 beside the wheel's 9.19), 2026-11-28, from `make gpu-check`: the static
    # probe, the full check, TF32 forced by the environment (no GC215), and the GPU made visible
    # by UUID. A healthy machine: only the two notes.
    "h200_vm_static": {("GC207", I, None), ("GC210", I, None)},
    "h200_vm_check": {("GC207", I, None), ("GC210", I, None)},
    "h200_vm_tf32_forced": {("GC207", I, None), ("GC210", I, None)},
    "h200_vm_visible_by_uuid": {("GC207", I, None), ("GC210", I, None)},
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_snapshots(name):
    path = pathlib.Path(__file__).parent / "fixtures" / "snapshots" / "recorded" / f"{name}.json"
    snap = Snapshot.from_json(path.read_text())
    assert found(snap) == RECORDED[name]


# --- issue 9 / issue 10: focused behaviour ------------------------------------------------------


def test_repeated_visible_device_is_called_a_repeat_not_a_missing_gpu():
    s = with_env(load(HEALTHY), CUDA_VISIBLE_DEVICES="0,1,1,2")
    (f,) = [f for f in diagnose(s) if f.id == "GC110"]
    assert "twice" in f.title and "does not exist" not in f.title
    (g,) = [
        f for f in diagnose(with_env(load(HEALTHY), CUDA_VISIBLE_DEVICES="0,9")) if f.id == "GC110"
    ]
    assert "does not exist" in g.title


def test_uvm_missing_is_judged_by_the_torch_child():
    s = load("cuda_unavailable_uvm")
    assert sev(s, "GC114") == E  # the child ran and CUDA failed
    assert sev(replace(s, torch_runtime=None), "GC114") == W  # not run: "may fail"
    ok = load("uvm_node_created_by_cuda")
    assert sev(ok, "GC114") is None  # CUDA initialised: nvidia-modprobe made the node


def test_exclusive_process_gpu_held_elsewhere_is_busy_not_faulty():
    s = with_gpu(load(HEALTHY), 3, compute_mode="exclusive_process")
    rt = s.torch_runtime
    err = "torch.AcceleratorError: CUDA error: CUDA-capable device(s) is/are busy or unavailable"
    devs = list(rt.devices)
    devs[3] = replace(devs[3], error=err, matmul_ok=None, matmul_max_error=None)
    s = replace(s, torch_runtime=replace(rt, devices=tuple(devs)))
    (f,) = [f for f in diagnose(s) if f.id == "GC215"]
    assert f.severity is Severity.WARN and f.gpu == 3 and "busy" in f.title
    assert "xid" not in f.fix.lower() and "nvidia-smi --query-compute-apps" in f.fix


def test_cuda_index_is_not_the_nvml_index():
    s = load("cuda_order_differs")
    assert facts.nvml_index(s, 0) == 1 and facts.nvml_index(s, 1) == 0
    (f,) = [f for f in diagnose(s) if f.id == "GC215"]
    assert f.gpu == 0 and "cuda:1" in f.title and "cuda:1 (GPU 0)" in f.evidence[0]
    # no UUID or bus id and several GPUs: unknown, never guessed
    rt = s.torch_runtime
    bare = tuple(replace(d, uuid=None, pci_bus_id=None) for d in rt.devices)
    assert facts.nvml_index(replace(s, torch_runtime=replace(rt, devices=bare)), 1) is None
    # joined on the PCI bus id when the UUID is missing
    by_bus = tuple(replace(d, uuid=None) for d in rt.devices)
    assert facts.nvml_index(replace(s, torch_runtime=replace(rt, devices=by_bus)), 0) == 1


def test_one_gpu_not_ours_is_info_and_names_it():
    s = with_gpu(load(HEALTHY), 5)
    gs = list(s.gpus)
    gs[5] = Gpu(index=5, error="NoPermission")
    s = replace(s, gpus=tuple(gs))
    got = [(f.id, f.severity.value, f.gpu) for f in diagnose(s) if f.id in ("GC301", "GC312")]
    assert got == [("GC312", I, 5)]


def test_jetson_without_cuda_in_torch_is_an_error():
    s = load("jetson_orin")
    rt = replace(s.torch_runtime, cuda_available=False, device_count=0, devices=(),
                 error="UserWarning: CUDA initialization: Found no NVIDIA driver")  # fmt: skip
    got = {(f.id, f.severity.value) for f in diagnose(replace(s, torch_runtime=rt))}
    assert got == {("GC115", E)}
    assert found(replace(s, torch_runtime=None)) == {("GC115", I, None)}  # never GC101


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_titles_do_not_repeat_the_gpu(name):
    # renderers append "(GPU n)" from `gpu`; a title that names it too reads "GPU 0 ... (GPU 0)"
    for f in diagnose(load(name)):
        if f.gpu is not None:
            assert f"GPU {f.gpu}" not in f.title, f.title
