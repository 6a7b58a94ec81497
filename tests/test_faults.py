"""The fault matrix, end to end: inject a fault at the probe boundary, run the real CLI.

For every fault the run finishes within its time budget, names the cause with a documented
finding id, exits with the documented code, and its --json report is valid against the schema.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

import pytest
from conftest import validate_report
from fakes.fake_pynvml import FakeGpu, FakeNvml
from fakes.machine import env_with, fake_binary, fake_torch, gpu_host, write

from gpucheck import cli, probe

# A Python with no torch in it: the interpreter this venv was made from.
BARE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def run_cli(monkeypatch, tmp_path, *, root, env, argv=("probe",), **collect_kw):
    """Run `gpucheck ARGV --json FILE` with collect() pointed at the fake machine.

    `probe` (the default) skips the torch child; `check --no-bench` runs it.
    """
    monkeypatch.setattr(
        probe, "collect", functools.partial(probe.collect, root=str(root), env=env, **collect_kw)
    )
    out = tmp_path / "report.json"
    start = time.monotonic()
    code = cli.main([*argv, "--json", str(out), "-q"])
    elapsed = time.monotonic() - start
    doc = json.loads(out.read_text())
    validate_report(doc)
    assert doc["exit_code"] == code
    return code, doc, elapsed


def ids(doc) -> set[str]:
    return {f["id"] for f in doc["findings"]}


def assert_named(doc, finding_id: str, severity: str = "error") -> None:
    found = [f for f in doc["findings"] if f["id"] == finding_id]
    assert found, f"{finding_id} not in {sorted(ids(doc))}"
    assert found[0]["severity"] == severity and found[0]["fix"], found[0]


@pytest.fixture
def host(tmp_path):
    return gpu_host(tmp_path / "root")


# --- NVML ---------------------------------------------------------------------------------

NVML_INIT_FAULTS = [
    # (init error, driver files present, expected finding, exit code)
    ("LibraryNotFound", False, "GC102", 1),  # a GPU on the bus, no driver at all
    ("LibraryNotFound", True, "GC106", 1),  # kernel module loaded, libnvidia-ml missing
    ("DriverNotLoaded", False, "GC103", 1),  # libnvidia-ml is there, the module is not loaded
    ("LibRmVersionMismatch", True, "GC105", 1),
    ("NoPermission", True, "GC108", 1),
]


@pytest.mark.parametrize("error, loaded, finding, code", NVML_INIT_FAULTS)
def test_nvml_init_errors(monkeypatch, tmp_path, error, loaded, finding, code):
    FakeNvml(init_error=error).install(monkeypatch)
    root = gpu_host(tmp_path / "root", driver_loaded=loaded)
    got, doc, _ = run_cli(monkeypatch, tmp_path, root=root, env=env_with())
    assert doc["snapshot"]["driver"]["nvml_error"] == error
    assert_named(doc, finding)
    assert got == code


def test_driver_not_loaded_with_driver_installed(monkeypatch, tmp_path, host):
    FakeNvml(init_error="DriverNotLoaded").install(monkeypatch)
    write(host, "/proc/modules", "")  # the package is installed, its module is not loaded
    got, doc, _ = run_cli(monkeypatch, tmp_path, root=host, env=env_with())
    assert got == 1 and ids(doc) & {"GC102", "GC103"}


def test_no_gpu_at_all_is_info_and_exit_0(monkeypatch, tmp_path):
    FakeNvml(init_error="LibraryNotFound").install(monkeypatch)
    root = tmp_path / "root"
    write(root, "/proc/modules", "")
    got, doc, _ = run_cli(monkeypatch, tmp_path, root=root, env=env_with())
    assert got == 0 and "GC101" in ids(doc)


def test_one_gpu_of_four_lost(monkeypatch, tmp_path, host):
    gpus = [
        FakeGpu(uuid=f"GPU-{i}", handle_error="GpuIsLost" if i == 2 else None) for i in range(4)
    ]
    FakeNvml(gpus).install(monkeypatch)
    got, doc, _ = run_cli(monkeypatch, tmp_path, root=host, env=env_with())
    lost = [f for f in doc["findings"] if f["id"] == "GC301"]
    assert got == 1 and [f["gpu"] for f in lost] == [2]
    assert [g["error"] for g in doc["snapshot"]["gpus"]] == [None, None, "GpuIsLost", None]


@pytest.mark.parametrize("how", ["NotSupported", "Unknown"])
def test_every_field_query_failing(monkeypatch, tmp_path, host, how):
    fake = FakeNvml([FakeGpu()])
    names = [
        n
        for n in dir(fake)
        if n.startswith("nvmlDeviceGet")
        and n not in ("nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex")
    ]
    fake.fails = {n: how for n in names}
    fake.install(monkeypatch)
    got, doc, _ = run_cli(monkeypatch, tmp_path, root=host, env=env_with())
    gpu = doc["snapshot"]["gpus"][0]
    recorded = gpu["unsupported"] if how == "NotSupported" else list(gpu["field_errors"])
    assert len(recorded) >= 10
    assert gpu["memory_total_bytes"] is None and gpu["error"] is None
    assert got in (0, 1)


def test_nvml_call_that_hangs(monkeypatch, tmp_path, host):
    fake = FakeNvml(fails={"nvmlInit": "hang"}).install(monkeypatch)
    try:
        got, doc, elapsed = run_cli(
            monkeypatch, tmp_path, root=host, env=env_with(), argv=("probe", "--timeout", "1")
        )
    finally:
        fake.release()
    assert elapsed < 1.0 + 1.0
    assert doc["snapshot"]["driver"]["nvml_error"] == "Timeout"
    assert_named(doc, "GC113")
    assert got == 1


# --- nvidia-smi (asked only when NVML fails) -----------------------------------------------

SMI = {
    "failing": "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9\n",
    "garbage": "printf '\\377\\376 not, a, csv\\n,,,,\\n'\n",
    "hanging": "sleep 60\n",
}


@pytest.mark.parametrize("kind", ["missing", *SMI])
def test_nvidia_smi_faults(monkeypatch, tmp_path, host, kind):
    FakeNvml(init_error="DriverNotLoaded").install(monkeypatch)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if kind in SMI:
        fake_binary(bin_dir, "nvidia-smi", SMI[kind])
    got, doc, elapsed = run_cli(monkeypatch, tmp_path, root=host, env=env_with([str(bin_dir)]))
    from gpucheck.probe.fallbacks import SMI_TIMEOUT

    assert elapsed < SMI_TIMEOUT + 1.0
    assert doc["snapshot"]["driver"]["nvidia_smi_error"]
    assert doc["snapshot"]["gpus"] == []
    assert got == 1 and ids(doc) & {"GC103", "GC113"}


# --- files -------------------------------------------------------------------------------


def test_proc_driver_version_malformed(monkeypatch, tmp_path, host):
    FakeNvml(init_error="LibraryNotFound").install(monkeypatch)
    write(host, "/proc/driver/nvidia/version", "\x00\x01 garbage without a version\n" * 3)
    got, doc, _ = run_cli(monkeypatch, tmp_path, root=host, env=env_with())
    assert doc["snapshot"]["driver"]["kernel_module_version"] is None
    assert got == 1


def test_unreadable_device_nodes(monkeypatch, tmp_path, host):
    FakeNvml(init_error="NoPermission").install(monkeypatch)
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m, **kw: False if "/dev/nvidia" in str(p) else real(p, m, **kw)
    )
    got, doc, _ = run_cli(monkeypatch, tmp_path, root=host, env=env_with())
    assert not any(n["readable"] for n in doc["snapshot"]["system"]["device_nodes"])
    assert_named(doc, "GC108")
    assert got == 1


# --- torch, in the child process -----------------------------------------------------------

TORCH_FAULTS = [
    # (fake torch body, expected finding, torch timeout)
    (
        "raise ImportError('libcudnn.so.9: cannot open shared object file: No such file or directory')\n",
        "GC211",
        20.0,
    ),
    (
        "raise OSError('libtorch_cuda.so: undefined symbol: __nvJitLinkCreate_12_8')\n",
        "GC211",
        20.0,
    ),
    ("import time\ntime.sleep(60)\n", "GC212", 1.5),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "GC213", 20.0),
]


@pytest.mark.parametrize("body, finding, timeout", TORCH_FAULTS)
def test_torch_child_faults(monkeypatch, tmp_path, host, body, finding, timeout):
    FakeNvml().install(monkeypatch)
    env = env_with(pythonpath=fake_torch(tmp_path / "site", body))
    argv = ("check", "--no-bench", "--torch-timeout", str(timeout))
    got, doc, elapsed = run_cli(monkeypatch, tmp_path, root=host, env=env, argv=argv)
    assert_named(doc, finding)
    assert got == 1
    assert elapsed < timeout + 1.0 + 1.0  # the child's budget, plus the probe and the pipeline


CUDA_UNAVAILABLE_TORCH = """
__version__ = "2.5.1+cu124"
class _V:
    cuda = "12.4"
    hip = None
version = _V()
class cuda:
    @staticmethod
    def is_available(): return False
    @staticmethod
    def device_count(): return 0
    @staticmethod
    def get_arch_list(): return []
class backends:
    class cudnn:
        @staticmethod
        def version(): return None
"""


def test_cuda_unavailable_with_a_gpu_present(monkeypatch, tmp_path, host):
    FakeNvml().install(monkeypatch)
    env = env_with(pythonpath=fake_torch(tmp_path / "site", CUDA_UNAVAILABLE_TORCH))
    got, doc, _ = run_cli(monkeypatch, tmp_path, root=host, env=env, argv=("check", "--no-bench"))
    assert doc["snapshot"]["torch_runtime"]["cuda_available"] is False
    assert "GC214" in ids(doc) or ids(doc) & {"GC202", "GC203"}
    assert got == 1


def test_torch_not_installed(monkeypatch, tmp_path, host):
    FakeNvml().install(monkeypatch)
    got, doc, _ = run_cli(
        monkeypatch,
        tmp_path,
        root=host,
        env=env_with(),
        python=BARE_PYTHON,
        argv=("check", "--no-bench"),
    )
    assert doc["snapshot"]["torch"]["installed"] is False
    assert_named(doc, "GC201", "warn")
    assert doc["recommendation"]["pip"]  # and what to install instead


def test_whole_run_timeout_bounds_a_hanging_child(monkeypatch, tmp_path, host):
    FakeNvml().install(monkeypatch)
    env = env_with(pythonpath=fake_torch(tmp_path / "site", "import time\ntime.sleep(60)\n"))
    argv = ("check", "--no-bench", "--torch-timeout", "60", "--timeout", "2")
    got, doc, elapsed = run_cli(monkeypatch, tmp_path, root=host, env=env, argv=argv)
    assert elapsed < 2 + 1.0
    assert doc["snapshot"]["torch_runtime"]["status"] == "timeout"
    assert_named(doc, "GC212")


def test_whole_run_timeout_bounds_nvidia_smi(monkeypatch, tmp_path, host):
    FakeNvml(init_error="DriverNotLoaded").install(monkeypatch)
    bin_dir = tmp_path / "bin"
    fake_binary(bin_dir, "nvidia-smi", SMI["hanging"])
    env = env_with([str(bin_dir)])
    got, doc, elapsed = run_cli(
        monkeypatch, tmp_path, root=host, env=env, argv=("probe", "--timeout", "1")
    )
    assert elapsed < 1 + 1.0
    assert doc["snapshot"]["driver"]["nvidia_smi_error"]
    assert got == 1
