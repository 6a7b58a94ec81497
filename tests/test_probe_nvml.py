"""NVML probe against the fake pynvml: fields, unsupported vs error, init failures, hangs,
and the fallbacks (/sys, /proc, nvidia-smi) that take over when NVML is unusable."""

from __future__ import annotations

import os
import stat
import sys
import time

import jsonschema
import pytest
from conftest import load_schema
from factories import MODELS
from fakes.fake_pynvml import CODES, DEVICE_FUNCTIONS, FakeGpu, FakeNvml

from gpucheck.probe import collect, fallbacks
from gpucheck.probe.nvml import decode_clock_event_reasons, nvml_error_name, probe_nvml, query_nvml
from gpucheck.snapshot import Gpu, Snapshot

H100 = MODELS["h100"]  # the fake's default GPU

GPU_FIELDS = (
    "name",
    "uuid",
    "pci_bus_id",
    "compute_capability",
    "vbios_version",
    "memory_total_bytes",
    "memory_used_bytes",
    "pcie_gen_current",
    "pcie_gen_max",
    "pcie_width_current",
    "pcie_width_max",
    "temperature_c",
    "power_draw_w",
    "power_limit_w",
    "sm_clock_mhz",
    "sm_clock_max_mhz",
    "mem_clock_mhz",
    "mem_clock_max_mhz",
    "clock_event_reasons",
    "utilization_percent",
    "ecc_enabled",
    "ecc_uncorrected_volatile",
    "ecc_uncorrected_aggregate",
    "retired_pages_sbe",
    "retired_pages_dbe",
    "retired_pages_pending",
    "remapped_rows_pending",
    "remapped_rows_failure",
    "persistence_mode",
    "mig_enabled",
    "compute_mode",
)


def test_healthy_two_gpus_every_field(monkeypatch):
    second = FakeGpu(
        name="NVIDIA A100-SXM4-80GB",
        uuid="GPU-1",
        bus_id=b"00000000:2A:00.0",
        cc=(8, 0),
        vbios=b"92.00.45.00.06\x00",  # bytes from older bindings, NUL-padded
        pcie_gen=3,
        reasons=0x4 | 0x40,
        ecc_volatile=2,
        ecc_aggregate=5,
        retired_sbe=(1, 2),
        retired_dbe=(3,),
        retired_pending=1,
        remapped=(0, 1, 1, 0),
        persistence=0,
        mig=(1, 1),
        mig_devices=("MIG-aaaa", "MIG-bbbb"),
        compute_mode=3,
        power_mw=250125,
        utilization=97,
    )
    fake = FakeNvml([FakeGpu(), second]).install(monkeypatch)
    result = query_nvml()
    assert result.error is None and result.errors == []
    assert (result.driver_version, result.cuda_version, result.nvml_version) == (
        "550.54.14",
        "12.4",
        "12.550.54.14",
    )
    g0, g1 = result.gpus
    assert g0 == Gpu(
        index=0,
        name=H100.name,
        uuid=FakeGpu().uuid,
        pci_bus_id="00000000:18:00.0",
        compute_capability="9.0",
        vbios_version="96.00.99.00.01",
        memory_total_bytes=H100.memory,
        memory_used_bytes=4 * 2**20,  # v2: without the 540 MiB the driver reserves
        pcie_gen_current=5,
        pcie_gen_max=5,
        pcie_width_current=16,
        pcie_width_max=16,
        temperature_c=31,
        power_draw_w=71.5,
        power_limit_w=700.0,
        sm_clock_mhz=345,
        sm_clock_max_mhz=1980,
        mem_clock_mhz=2619,
        mem_clock_max_mhz=2619,
        clock_event_reasons=("gpu_idle",),
        utilization_percent=0,
        ecc_enabled=True,
        ecc_uncorrected_volatile=0,
        ecc_uncorrected_aggregate=0,
        retired_pages_sbe=0,
        retired_pages_dbe=0,
        retired_pages_pending=False,
        remapped_rows_pending=False,
        remapped_rows_failure=False,
        persistence_mode=True,
        mig_enabled=False,
        compute_mode="default",
        source="nvml",
    )
    assert g1.compute_capability == "8.0" and g1.pcie_gen_current == 3
    assert g1.vbios_version == "92.00.45.00.06"
    assert g1.clock_event_reasons == ("sw_power_cap", "hw_thermal_slowdown")
    assert (g1.ecc_uncorrected_volatile, g1.ecc_uncorrected_aggregate) == (2, 5)
    assert (g1.retired_pages_sbe, g1.retired_pages_dbe, g1.retired_pages_pending) == (2, 1, True)
    assert (g1.remapped_rows_pending, g1.remapped_rows_failure) == (True, False)
    assert g1.persistence_mode is False and g1.mig_enabled is True
    assert g1.compute_mode == "exclusive_process" and g1.power_draw_w == 250.125
    # MIG mode: utilisation is NotSupported, and the MIG devices are enumerated
    assert g1.utilization_percent is None and "utilization_percent" in g1.unsupported
    assert g1.mig_devices == ("MIG-aaaa", "MIG-bbbb")
    assert fake.init_calls == 1 and fake.shutdown_calls == 1


@pytest.mark.parametrize(
    "name",
    [
        "LibraryNotFound",
        "DriverNotLoaded",
        "LibRmVersionMismatch",
        "NoPermission",
        "GpuIsLost",
        "Uninitialized",
        "Unknown",
        "InsufficientPower",
        "OperatingSystem",
    ],
)
def test_init_error_recorded_by_name(monkeypatch, name):
    fake = FakeNvml(init_error=name).install(monkeypatch)
    result = probe_nvml(timeout=5)
    assert result.error == name
    assert result.gpus == ()
    assert fake.shutdown_calls == 0  # init failed: nothing to shut down


def test_pynvml_missing_is_module_not_found(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert query_nvml().error == "ModuleNotFound"


def test_error_name_from_class_or_code():
    class Bare(Exception):
        def __init__(self, value):
            self.value = value

    from fakes.fake_pynvml import NVMLError

    assert nvml_error_name(NVMLError(18)) == "LibRmVersionMismatch"
    assert nvml_error_name(Bare(18)) == "LibRmVersionMismatch"
    assert nvml_error_name(Bare(9)) == "DriverNotLoaded"
    assert nvml_error_name(Bare(4242)) == "Code4242"
    assert nvml_error_name(ValueError("x")) == "Unknown"


def test_not_supported_and_function_not_found_are_unsupported_not_errors(monkeypatch):
    gpu = FakeGpu(
        fails={
            "nvmlDeviceGetPowerUsage": "NotSupported",
            "nvmlDeviceGetRemappedRows": "FunctionNotFound",
            "nvmlDeviceGetTemperatureV": "NoPermission",
            "nvmlDeviceGetMemoryInfo": "Unknown",
        }
    )
    FakeNvml([gpu]).install(monkeypatch)
    (g,) = query_nvml().gpus
    assert g.error is None
    assert set(g.unsupported) == {"power_draw_w", "remapped_rows_pending", "remapped_rows_failure"}
    assert g.field_errors == {
        "temperature_c": "NoPermission",
        "memory_total_bytes": "Unknown",
        "memory_used_bytes": "Unknown",
    }
    assert g.power_draw_w is None and g.temperature_c is None and g.memory_total_bytes is None
    assert g.power_limit_w == 700.0  # the neighbours still came through


@pytest.mark.parametrize("how", ["NotSupported", "NoPermission"])
def test_every_field_failing(monkeypatch, how):
    gpu = FakeGpu(fails=dict.fromkeys(DEVICE_FUNCTIONS, how))
    FakeNvml([gpu]).install(monkeypatch)
    (g,) = query_nvml().gpus
    assert all(getattr(g, f) is None for f in GPU_FIELDS)
    if how == "NotSupported":
        assert set(g.unsupported) == set(GPU_FIELDS) and g.field_errors == {}
    else:
        assert g.field_errors == dict.fromkeys(GPU_FIELDS, "NoPermission") and g.unsupported == ()
    assert g.error is None


def test_one_gpu_of_several_lost_at_handle(monkeypatch):
    FakeNvml([FakeGpu(), FakeGpu(handle_error="GpuIsLost"), FakeGpu()]).install(monkeypatch)
    gpus = query_nvml().gpus
    assert [g.error for g in gpus] == [None, "GpuIsLost", None]
    assert gpus[1] == Gpu(index=1, error="GpuIsLost")
    assert gpus[2].name == H100.name


def test_gpu_lost_midway_keeps_earlier_fields_and_stops(monkeypatch):
    fake = FakeNvml([FakeGpu(fails={"nvmlDeviceGetCurrPcieLinkGeneration": "GpuIsLost"})])
    fake.install(monkeypatch)
    (g,) = query_nvml().gpus
    assert g.error == "GpuIsLost"
    assert g.memory_total_bytes == H100.memory and g.pcie_gen_current is None
    assert "nvmlDeviceGetPowerUsage" not in fake.calls  # no more calls into a lost GPU


def test_system_call_errors_and_bytes_driver(monkeypatch):
    FakeNvml(
        driver=b"535.171.04\x00", fails={"nvmlSystemGetCudaDriverVersion": "NotSupported"}
    ).install(monkeypatch)
    result = query_nvml()
    assert result.driver_version == "535.171.04"
    assert result.cuda_version is None
    assert result.errors == ["nvmlSystemGetCudaDriverVersion: NotSupported"]


def test_device_count_error(monkeypatch):
    fake = FakeNvml(fails={"nvmlDeviceGetCount": "Unknown"}).install(monkeypatch)
    result = query_nvml()
    assert result.gpus == () and result.errors == ["nvmlDeviceGetCount: Unknown"]
    assert fake.shutdown_calls == 1


def test_old_bindings_fall_back_to_throttle_reasons_or_mark_unsupported(monkeypatch):
    FakeNvml([FakeGpu(reasons=0x8)], missing=("nvmlDeviceGetCurrentClocksEventReasons",)).install(
        monkeypatch
    )
    assert query_nvml().gpus[0].clock_event_reasons == ("hw_slowdown",)
    FakeNvml(
        missing=(
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetCurrentClocksThrottleReasons",
        )
    ).install(monkeypatch)
    (g,) = query_nvml().gpus
    assert g.clock_event_reasons is None and "clock_event_reasons" in g.unsupported


def test_new_bindings_on_an_old_driver_fall_back_to_the_older_calls(monkeypatch):
    # nvidia-ml-py 13.x has every function, but an R470/R525 driver lacks the newer C symbols:
    # the bindings raise FunctionNotFound when called, and the probe tries the older call.
    fake = FakeNvml(
        [FakeGpu(reasons=0x8 | 0x200, temperature=77)],
        driver_lacks=(
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetTemperatureV",
            "nvmlDeviceGetMemoryInfo_v2",
        ),
    ).install(monkeypatch)
    (g,) = query_nvml().gpus
    assert g.clock_event_reasons == ("hw_slowdown", "board_limit")
    assert g.temperature_c == 77
    g0 = FakeGpu()
    assert g.memory_used_bytes == g0.memory_used + g0.memory_reserved  # v1: reserved is "used"
    assert g.unsupported == () and g.field_errors == {}
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in fake.calls


def test_memory_used_is_read_with_v2(monkeypatch):
    FakeNvml().install(monkeypatch)
    (g,) = query_nvml().gpus
    assert g.memory_used_bytes == 4 * 2**20  # what nvidia-smi shows, not 544.5 MiB


def test_gpus_this_process_may_not_open_are_recorded_as_such(monkeypatch):
    # nvmlDeviceGetCount_v2 counts GPUs whose handle NVML refuses with NO_PERMISSION (a Slurm
    # job with cgroup-restricted GPUs): they are recorded, and the others are read in full.
    FakeNvml(
        [
            FakeGpu(handle_error="NoPermission"),
            FakeGpu(uuid="GPU-b"),
            FakeGpu(handle_error="NoPermission"),
        ]
    ).install(monkeypatch)
    g0, g1, g2 = query_nvml().gpus
    assert (g0.error, g1.error, g2.error) == ("NoPermission", None, "NoPermission")
    assert g1.uuid == "GPU-b" and g0.name is None


def test_mig_devices_are_enumerated(monkeypatch):
    FakeNvml([FakeGpu(mig=(1, 1), mig_devices=("MIG-1",)), FakeGpu(mig=(1, 1)), FakeGpu()]).install(
        monkeypatch
    )
    with_one, empty, off = query_nvml().gpus
    assert with_one.mig_devices == ("MIG-1",) and with_one.utilization_percent is None
    assert empty.mig_enabled is True and empty.mig_devices == ()  # MIG on, no instances
    assert off.mig_devices is None and off.utilization_percent == 0


def test_slow_gpus_that_keep_answering_are_waited_for(monkeypatch):
    # 4 GPUs taking 0.3 s each (no persistence mode: each initialises in turn) pass a 0.5 s
    # limit, which bounds the wait for the next GPU, not the whole query.
    slow = {"nvmlDeviceGetName": 0.3}
    FakeNvml([FakeGpu(fails=slow) for _ in range(4)]).install(monkeypatch)
    result = probe_nvml(timeout=0.5)
    assert result.error is None and len(result.gpus) == 4


def test_a_hang_midway_keeps_the_gpus_read_before_it(monkeypatch):
    fake = FakeNvml(
        [FakeGpu(), FakeGpu(fails={"nvmlDeviceGetPowerUsage": "hang"}), FakeGpu()]
    ).install(monkeypatch)
    try:
        result = probe_nvml(timeout=0.5)
    finally:
        fake.release()
    assert result.error == "Timeout" and result.driver_version == "550.54.14"
    assert [g.error for g in result.gpus] == [None, "Timeout", "Timeout"]
    assert result.gpus[0].name == H100.name
    assert "1 of 3 GPU(s) read" in result.errors[-1]


def test_decode_clock_event_reasons():
    assert decode_clock_event_reasons(0) == ()
    assert decode_clock_event_reasons(0x1FF) == (
        "gpu_idle",
        "applications_clocks_setting",
        "sw_power_cap",
        "hw_slowdown",
        "sync_boost",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "display_clock_setting",
    )
    assert decode_clock_event_reasons(0x200 | 0x400) == ("board_limit", "reliability")
    assert decode_clock_event_reasons(0x800 | 0x4) == ("sw_power_cap", "unknown_0x800")


@pytest.mark.parametrize("where", ["init", "device"])
def test_hanging_nvml_call_times_out(monkeypatch, where):
    if where == "init":
        fake = FakeNvml(init_error="hang")
    else:
        fake = FakeNvml([FakeGpu(fails={"nvmlDeviceGetPowerUsage": "hang"})])
    fake.install(monkeypatch)
    start = time.monotonic()
    try:
        result = probe_nvml(timeout=0.5)
    finally:
        fake.release()
    assert result.error == "Timeout"
    assert time.monotonic() - start < 1.5


# --- merged with the fallbacks, through collect() ----------------------------------------


def _fake_tree(tmp_path, *, sys_version=None, proc_version=None):
    root = tmp_path / "root"
    for folder in ("proc", "sys/module", "dev", "etc"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    if sys_version is not None:
        (root / "sys/module/nvidia").mkdir(parents=True)
        (root / "sys/module/nvidia/version").write_text(sys_version)
    if proc_version is not None:
        (root / "proc/driver/nvidia").mkdir(parents=True)
        (root / "proc/driver/nvidia/version").write_text(proc_version)
    return str(root)


def _fake_smi(tmp_path, body: str) -> dict[str, str]:
    """A fake nvidia-smi on PATH; returns an env whose PATH has only it (and /bin for sh)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + body + "\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin"}


PROC = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"


def _collect(root, env):
    snap = collect(root=root, env=env, torch_child=False, nvml_timeout=5)
    assert Snapshot.from_json(snap.to_json()) == snap
    jsonschema.Draft202012Validator(load_schema("snapshot")).validate(snap.to_dict())
    return snap


def test_collect_uses_nvml_when_it_works(monkeypatch, tmp_path):
    FakeNvml([FakeGpu(), FakeGpu()]).install(monkeypatch)
    env = _fake_smi(tmp_path, "echo should-not-run; exit 1")
    snap = _collect(_fake_tree(tmp_path, proc_version=PROC), env)
    assert snap.driver.source == "nvml" and snap.driver.version == "550.54.14"
    assert snap.driver.cuda_version == "12.4" and snap.driver.kernel_module_version == "550.54.14"
    assert snap.driver.nvidia_smi_error is None  # not consulted
    assert [g.source for g in snap.gpus] == ["nvml", "nvml"]


@pytest.mark.parametrize(
    ("sys_version", "proc_version", "source", "version"),
    [
        ("550.54.14\n", PROC, "/sys/module/nvidia/version", "550.54.14"),
        (None, PROC, "/proc/driver/nvidia/version", "550.54.14"),
        ("garbage", "NVRM version: nonsense\n", None, None),
    ],
)
def test_fallback_files_when_nvml_fails(
    monkeypatch, tmp_path, sys_version, proc_version, source, version
):
    FakeNvml(init_error="LibRmVersionMismatch").install(monkeypatch)
    env = {"PATH": str(tmp_path / "empty")}
    snap = _collect(_fake_tree(tmp_path, sys_version=sys_version, proc_version=proc_version), env)
    assert snap.driver.nvml_error == "LibRmVersionMismatch"
    assert (snap.driver.source, snap.driver.version) == (source, version)
    assert snap.driver.nvidia_smi_error == "nvidia-smi not found on PATH"
    assert snap.gpus == ()


def test_nvidia_smi_gives_gpus_when_nvml_module_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    csv = "0, NVIDIA GeForce RTX 4090, GPU-abc, 00000000:01:00.0, 550.54.14, 8.9, 24564, 300"
    env = _fake_smi(tmp_path, f"echo '{csv}'")
    snap = _collect(_fake_tree(tmp_path), env)
    assert snap.driver.nvml_error == "ModuleNotFound"
    assert (snap.driver.source, snap.driver.version) == ("nvidia-smi", "550.54.14")
    (g,) = snap.gpus
    assert (g.source, g.name, g.compute_capability) == (
        "nvidia-smi",
        "NVIDIA GeForce RTX 4090",
        "8.9",
    )
    assert g.memory_total_bytes == 24564 * 1024 * 1024 and g.memory_used_bytes == 300 * 1024 * 1024


def test_nvidia_smi_retries_without_compute_cap_on_old_drivers(tmp_path):
    body = (
        'case "$1" in *compute_cap*) echo \'Field "compute_cap" is not a valid field to query.\'; '
        "exit 2;; esac\necho '0, Tesla T4, GPU-1, 00000000:00:04.0, 470.223.02, 15109, 0'"
    )
    result = fallbacks.query_nvidia_smi("/", _fake_smi(tmp_path, body))
    assert result.error is None
    (g,) = result.gpus
    assert (g.name, g.compute_capability, result.driver_version) == ("Tesla T4", None, "470.223.02")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "echo 'Failed to initialize NVML: Driver/library version mismatch'; exit 18",
            "nvidia-smi exited with 18: Failed to initialize NVML: Driver/library version mismatch",
        ),
        ("echo 'hello, world'", "nvidia-smi printed unexpected output: hello, world"),
        ("printf '\\377\\376 binary junk'", "nvidia-smi printed unexpected output:"),
        ("kill -9 $$", "nvidia-smi exited with -9: no output"),
    ],
)
def test_nvidia_smi_failures_are_text(tmp_path, body, expected):
    result = fallbacks.query_nvidia_smi("/", _fake_smi(tmp_path, body))
    assert result.gpus == ()
    assert result.error is not None and result.error.startswith(expected)


def test_hanging_nvidia_smi_is_killed(tmp_path):
    start = time.monotonic()
    result = fallbacks.query_nvidia_smi("/", _fake_smi(tmp_path, "sleep 30"), timeout=0.5)
    assert result.error == "nvidia-smi timed out after 0.5 s"
    assert time.monotonic() - start < 3


def test_collect_survives_hanging_nvml_and_smi(monkeypatch, tmp_path):
    fake = FakeNvml(init_error="hang").install(monkeypatch)
    env = _fake_smi(tmp_path, "sleep 30")
    start = time.monotonic()
    try:
        snap = collect(
            root=_fake_tree(tmp_path, proc_version=PROC),
            env=env,
            torch_child=False,
            nvml_timeout=0.5,
            smi_timeout=0.5,
        )
    finally:
        fake.release()
    assert time.monotonic() - start < 3
    assert snap.driver.nvml_error == "Timeout"
    assert snap.driver.nvidia_smi_error == "nvidia-smi timed out after 0.5 s"
    assert (snap.driver.source, snap.driver.version) == ("/proc/driver/nvidia/version", "550.54.14")


def test_error_codes_table_matches_fake():
    from gpucheck.probe.nvml import ERROR_NAMES

    for name, code in CODES.items():
        assert ERROR_NAMES[code] == name


def test_probed_text_is_cleaned_once_at_the_probe(monkeypatch, tmp_path):
    # A GPU name with ESC and NUL must reach neither the terminal nor JUnit XML raw.
    FakeNvml([FakeGpu(name="NVIDIA\x1b[31m H100\x00x\x9b")]).install(monkeypatch)
    env = _fake_smi(tmp_path, "exit 1")
    snap = _collect(_fake_tree(tmp_path, proc_version=PROC), env)
    assert snap.gpus[0].name == "NVIDIA\\x1b[31m H100\\x00x\\x9b"
    assert snap.driver.version == "550.54.14"  # clean text untouched


def test_clean_keeps_newlines_and_rebuilds_only_what_changed():
    from gpucheck.probe.clean import clean
    from gpucheck.snapshot import Driver

    d = Driver(version="550", errors=("line one\nline two\tend",))
    assert clean(d) is d
    dirty = Driver(version="5\x0750", errors=("ok",))
    assert clean(dirty) == Driver(version="5\\x0750", errors=("ok",))
