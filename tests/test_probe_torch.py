"""Torch probes: static metadata (no import), and the child process against fake torch packages
on PYTHONPATH (import error, hang, SIGKILL, wrong matmul) plus one run of the real CPU torch."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import textwrap
import time

import pytest

from gpucheck.probe import collect
from gpucheck.probe.pyenv import PyEnv, inspect_python
from gpucheck.probe.torch_runtime import parse_child_output, run_torch_child
from gpucheck.probe.torch_static import probe_torch_static
from gpucheck.snapshot import Package, Snapshot, TorchDevice

TEXT = pathlib.Path(__file__).parent / "fixtures" / "text"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


# --- static ---------------------------------------------------------------------------------


def fake_site(tmp_path, version="2.9.1+cu128", version_py="torch_version_cu128.py.txt"):
    site = tmp_path / "site-packages"
    info = site / f"torch-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        textwrap.dedent(f"""\
        Metadata-Version: 2.1
        Name: torch
        Version: {version}
        Requires-Dist: filelock
        Requires-Dist: nvidia-cudnn-cu12==9.10.2.21; platform_system == "Linux"
        Requires-Dist: nvidia-cublas-cu12==12.8.4.1; platform_system == "Linux"
        Requires-Dist: nvidia-nccl-cu12==2.27.5; platform_system == "Linux"
        """)
    )
    (site / "torch").mkdir()
    (site / "torch/version.py").write_text((TEXT / version_py).read_text())
    for name, ver in (("nvidia_cudnn_cu12", "9.10.2.21"), ("nvidia_cublas_cu12", "12.8.4.1")):
        dist = site / f"{name}-{ver}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {ver}\n"
        )
    return site


def test_static_cuda_build(tmp_path):
    site = fake_site(tmp_path)
    torch = probe_torch_static(PyEnv(executable=sys.executable, path=(str(site),)))
    assert torch.installed and torch.error is None
    assert (torch.version, torch.local, torch.cuda, torch.hip) == (
        "2.9.1+cu128",
        "cu128",
        "12.8",
        None,
    )
    assert torch.location == str(site / "torch")
    # nccl is required but not installed: only what is on disk is listed
    assert torch.nvidia_wheels == (
        Package("nvidia-cudnn-cu12", "9.10.2.21"),
        Package("nvidia-cublas-cu12", "12.8.4.1"),
    )
    assert torch.source == "importlib.metadata"


def test_static_rocm_build_and_missing_version_py(tmp_path):
    site = fake_site(tmp_path, "2.9.1+rocm6.4", "torch_version_rocm.py.txt")
    torch = probe_torch_static(PyEnv(executable=sys.executable, path=(str(site),)))
    assert (torch.local, torch.cuda, torch.hip) == ("rocm6.4", None, "6.4.43482-0f2d60242")
    (site / "torch/version.py").unlink()
    torch = probe_torch_static(PyEnv(executable=sys.executable, path=(str(site),)))
    assert torch.installed and torch.cuda is None and "version.py" in torch.error


def test_static_not_installed(tmp_path):
    torch = probe_torch_static(PyEnv(executable=sys.executable, path=(str(tmp_path),)))
    assert torch.installed is False and torch.version is None and torch.error is None


def test_static_real_cpu_torch():
    torch = probe_torch_static(inspect_python(None, os.environ))
    assert torch.installed and torch.local == "cpu" and torch.cuda is None
    assert torch.location and os.path.isfile(os.path.join(torch.location, "version.py"))


@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="needs a second interpreter")
def test_other_interpreter_without_torch_is_not_spawned():
    pyenv = inspect_python(SYSTEM_PYTHON, os.environ)
    if probe_torch_static(pyenv).installed:
        pytest.skip("the system python has torch")
    start = time.monotonic()
    snap = collect(python=SYSTEM_PYTHON, torch_child=True, torch_timeout=30)
    assert time.monotonic() - start < 3  # no 3-second torch child was started
    assert snap.system.python.executable == pyenv.executable
    assert snap.torch.installed is False
    assert snap.torch_runtime.status == "not-installed" and snap.torch_runtime.duration_s is None
    assert run_torch_child(SYSTEM_PYTHON, timeout=30).status == "not-installed"


def test_bad_interpreter_is_an_error_not_an_exception(tmp_path):
    pyenv = inspect_python(str(tmp_path / "no-such-python"), os.environ)
    assert pyenv.error and "could not run" in pyenv.error
    torch = probe_torch_static(pyenv)
    assert torch.installed is False and torch.error == pyenv.error


# --- the child, against fake torch packages ------------------------------------------------


def fake_torch(tmp_path, body: str) -> dict[str, str]:
    pkg = tmp_path / "fake" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(body))
    return {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}


def test_import_error_keeps_last_traceback_line(tmp_path):
    env = fake_torch(
        tmp_path,
        """\
        raise ImportError("libcudnn.so.9: cannot open shared object file: No such file or directory")
        """,
    )
    rt = run_torch_child(sys.executable, timeout=20, env=env)
    assert rt.status == "import-error"
    assert rt.error == (
        "ImportError: libcudnn.so.9: cannot open shared object file: No such file or directory"
    )
    assert rt.returncode == 0 and rt.version is None


def test_undefined_symbol_oserror(tmp_path):
    env = fake_torch(
        tmp_path,
        """\
        raise OSError("libtorch_cuda.so: undefined symbol: __nvJitLinkCreate_12_8, version libnvJitLink.so.12")
        """,
    )
    rt = run_torch_child(sys.executable, timeout=20, env=env)
    assert rt.status == "import-error" and "undefined symbol" in rt.error


def test_hanging_import_is_killed_with_its_children(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    env = fake_torch(
        tmp_path,
        f"""\
        import subprocess, time
        p = subprocess.Popen(["sleep", "60"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(60)
        """,
    )
    start = time.monotonic()
    rt = run_torch_child(sys.executable, timeout=1.5, env=env)
    assert time.monotonic() - start < 4
    assert rt.status == "timeout" and rt.timeout_s == 1.5
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert _dead(grandchild)  # the whole process group was killed


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (PID 1 in a container may not reap)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_child_killed_by_signal(tmp_path):
    env = fake_torch(
        tmp_path,
        """\
        import os, signal, sys
        sys.stderr.write("about to die\\n")
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    rt = run_torch_child(sys.executable, timeout=20, env=env)
    assert rt.status == "crash" and rt.returncode == -9
    assert "signal 9" in rt.error and "about to die" in rt.error


def test_child_exits_without_result(tmp_path):
    env = fake_torch(tmp_path, "import os\nprint('noise')\nos._exit(0)\n")
    rt = run_torch_child(sys.executable, timeout=20, env=env)
    assert rt.status == "crash" and rt.returncode == 0 and "noise" in rt.error


def test_missing_interpreter_is_a_crash_record(tmp_path):
    rt = run_torch_child(str(tmp_path / "nope"), timeout=5)
    assert rt.status == "crash" and "could not start" in rt.error


FAKE_CUDA_TORCH = """\
    # A numpy-backed stand-in with just the API the child uses: two "GPUs", the second wrong.
    # With TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 the "GPUs" round matmul inputs to TF32, as cuBLAS
    # does (10 mantissa bits).
    import contextlib, os, types
    import numpy as np

    __version__ = "2.9.1+cu128"
    version = types.SimpleNamespace(cuda="12.8", hip=None)

    def _tf32(a):
        bits = np.asarray(a, dtype=np.float32).view(np.int32)
        return ((bits + 0x1000) & ~0x1FFF).astype(np.int32).view(np.float32)

    class Tensor:
        def __init__(self, a, device="cpu"):
            self.a, self.device = np.asarray(a), device
            if self.a.dtype != np.float64:
                self.a = self.a.astype(np.float32)
        def __matmul__(self, other):
            x, y = self.a, other.a
            if self.device.startswith("cuda") and os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") == "1":
                x, y = _tf32(x), _tf32(y)
            out = x @ y
            if self.device == "cuda:1":
                out = out + 0.5  # a broken GPU
            return Tensor(out, self.device)
        def __sub__(self, other):
            return Tensor(self.a - other.a)
        def __mul__(self, k):
            return Tensor(self.a * k, self.device)
        def __truediv__(self, k):
            return Tensor(self.a / k, self.device)
        def to(self, device):
            return Tensor(self.a, device)
        def cpu(self):
            return Tensor(self.a)
        def double(self):
            return Tensor(self.a.astype(np.float64), self.device)
        def abs(self):
            return Tensor(np.abs(self.a))
        def max(self):
            return float(self.a.max())

    class Generator:
        def manual_seed(self, seed):
            self.rng = np.random.default_rng(seed)
            return self

    def randn(*shape, generator):
        return Tensor(generator.rng.standard_normal(shape))

    def round(t):
        return Tensor(np.round(t.a))

    def clamp(t, lo, hi):
        return Tensor(np.clip(t.a, lo, hi))

    def device(kind, index):
        return f"{kind}:{index}"

    def get_float32_matmul_precision():
        return "highest"

    class _Cuda:
        nccl = types.SimpleNamespace(version=lambda: (2, 21, 5))
        def is_available(self): return True
        def device_count(self): return 2
        def get_arch_list(self): return ["sm_80", "sm_90", "compute_90"]
        def is_bf16_supported(self, including_emulation=True): return True
        def synchronize(self, device): pass
        def device(self, i): return contextlib.nullcontext()
        def get_device_properties(self, i):
            return types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", major=9, minor=0,
                                         total_memory=85520809984, uuid=f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd",
                                         pci_domain_id=0, pci_bus_id=0x18 + i, pci_device_id=0)

    cuda = _Cuda()
    backends = types.SimpleNamespace(
        cudnn=types.SimpleNamespace(version=lambda: 91002),
        cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=True)),
    )
    """


def test_fake_cuda_torch_matmul_checked_per_device(tmp_path):
    env = fake_torch(tmp_path, FAKE_CUDA_TORCH)
    rt = run_torch_child(sys.executable, timeout=30, env=env)
    assert rt.status == "ok", rt.error
    assert (rt.version, rt.cuda_version, rt.cuda_available, rt.device_count) == (
        "2.9.1+cu128",
        "12.8",
        True,
        2,
    )
    assert rt.arch_list == ("sm_80", "sm_90", "compute_90")
    assert (rt.cudnn_version, rt.nccl_version, rt.bf16_supported) == ("9.10.2", "2.21.5", True)
    d0, d1 = rt.devices
    assert d0 == TorchDevice(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        capability="9.0",
        total_memory_bytes=85520809984,
        matmul_ok=True,
        matmul_max_error=0.0,  # exact inputs: a working device is exact
        uuid="GPU-00000000-aaaa-bbbb-cccc-dddddddddddd",
        pci_bus_id="00000000:18:00.0",
        matmul_tolerance=d0.matmul_tolerance,
        matmul_precision="fp32",
        bf16_supported=True,
    )
    assert 0 < d0.matmul_tolerance < 1e-2
    assert d1.matmul_ok is False and d1.matmul_max_error == pytest.approx(0.5, abs=1e-3)
    assert rt.import_time_s is not None and rt.error is None


def test_forced_tf32_is_not_a_faulty_gpu(tmp_path):
    # NVIDIA's PyTorch containers set TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1: cuBLAS then runs
    # TF32 whatever allow_tf32 says. Before: N(0,1) inputs differed from the CPU by ~0.02,
    # over the fixed 1e-2 tolerance, and every Ampere+ GPU got GC215 "RMA it".
    env = fake_torch(tmp_path, FAKE_CUDA_TORCH)
    env["TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"] = "1"
    rt = run_torch_child(sys.executable, timeout=30, env=env)
    d0, d1 = rt.devices
    assert d0.matmul_ok is True and d0.matmul_max_error == 0.0
    assert d0.matmul_precision == "tf32" and d0.matmul_tolerance < 1e-2
    assert d1.matmul_ok is False  # a real fault of 0.5 still shows, TF32 or not


def test_fake_torch_with_failing_pieces(tmp_path):
    body = textwrap.dedent(FAKE_CUDA_TORCH) + textwrap.dedent("""\
        def _boom():
            raise RuntimeError("cuDNN version incompatibility: PyTorch was compiled against (9, 1, 0)")
        backends.cudnn.version = _boom
        def _props(i):
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device")
        cuda.get_device_properties = _props
        """)
    rt = run_torch_child(sys.executable, timeout=30, env=fake_torch(tmp_path, body))
    assert rt.status == "ok" and rt.cudnn_version is None
    assert "cudnn_version: RuntimeError: cuDNN version incompatibility" in rt.error
    assert [d.error for d in rt.devices] == [
        "RuntimeError: CUDA error: no kernel image is available for execution on the device"
    ] * 2


def test_parse_child_output_picks_the_marked_line():
    out = 'noise\n{"not": "ours"}\n{"gpucheck_torch_child": 1, "status": "ok"}\ntrailing {\n'
    assert parse_child_output(out) == {"gpucheck_torch_child": 1, "status": "ok"}
    assert parse_child_output("{broken json\n") is None


# --- the real CPU torch of this venv (one run, a few seconds) ------------------------------


def test_real_cpu_torch_child_through_collect():
    snap = collect(torch_child=True, torch_timeout=120)
    assert Snapshot.from_json(snap.to_json()) == snap
    rt = snap.torch_runtime
    assert rt.status == "ok", rt.error
    assert rt.version == snap.torch.version and rt.version.endswith("+cpu")
    assert rt.cuda_version is None and rt.cuda_available is False and rt.device_count == 0
    assert rt.devices == () and rt.import_time_s > 0 and rt.duration_s >= rt.import_time_s
    assert rt.timeout_s == 120 and rt.returncode == 0


# --- the matmul judgement, on the CPU with real torch (issue 9, item 2) ----------------------


def _round_tf32(torch, x):
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def test_exact_inputs_make_the_check_independent_of_the_precision_in_force():
    torch = pytest.importorskip("torch")
    from gpucheck.probe import _torch_child as child

    a, b = child.exact_inputs(torch, 1234)
    for precision, rnd in (
        ("fp32", lambda x: x),
        ("tf32", lambda x: _round_tf32(torch, x)),
        ("bf16", lambda x: x.to(torch.bfloat16).to(torch.float32)),
    ):
        got = rnd(a) @ rnd(b)  # what a working GPU computes in that precision
        tol = child.matmul_tolerance(torch, a, b, precision, inputs_exact=True)
        assert child.judge_matmul(torch, a, b, got, tol) == (True, 0.0), precision


def test_the_old_check_fails_a_healthy_tf32_gpu():
    # Why the inputs changed: N(0,1) inputs under TF32 differ from the CPU by more than the old
    # fixed 1e-2 tolerance, while the exact-input judgement passes them.
    torch = pytest.importorskip("torch")
    from gpucheck.probe import _torch_child as child

    gen = torch.Generator().manual_seed(1234)
    a, b = torch.randn(256, 256, generator=gen), torch.randn(256, 256, generator=gen)
    tf32 = _round_tf32(torch, a) @ _round_tf32(torch, b)
    assert float((tf32 - a @ b).abs().max()) > 1e-2
    assert child.measured_precision(torch, a, b, tf32) == "tf32"
    assert child.measured_precision(torch, a, b, a @ b) == "fp32"
    bf16 = a.to(torch.bfloat16).float() @ b.to(torch.bfloat16).float()
    assert child.measured_precision(torch, a, b, bf16) == "bf16"


def test_a_wrong_element_or_nan_fails_in_every_precision():
    torch = pytest.importorskip("torch")
    from gpucheck.probe import _torch_child as child

    a, b = child.exact_inputs(torch, 7)
    for precision in ("fp32", "tf32"):
        tol = child.matmul_tolerance(torch, a, b, precision, inputs_exact=True)
        bad = a @ b
        bad[3, 7] += 48.5  # a stuck bit in a high mantissa or exponent bit
        assert child.judge_matmul(torch, a, b, bad, tol)[0] is False
        bad[3, 7] = float("nan")
        assert child.judge_matmul(torch, a, b, bad, tol)[0] is False
    # exact inputs: the fp32 accumulation bound in every mode; other inputs: wider in TF32
    exact = [child.matmul_tolerance(torch, a, b, p, inputs_exact=True) for p in ("fp32", "tf32")]
    assert exact[0] == exact[1] < 1e-2
    assert child.matmul_tolerance(torch, a, b, "tf32", inputs_exact=False) > 1.0


def test_precision_in_force_reads_the_override_variables():
    torch = pytest.importorskip("torch")
    from gpucheck.probe import _torch_child as child

    torch.backends.cuda.matmul.allow_tf32 = False
    assert child.precision_in_force(torch, {}) == "fp32"
    assert child.precision_in_force(torch, {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}) == "tf32"
    assert (
        child.precision_in_force(
            torch, {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1", "NVIDIA_TF32_OVERRIDE": "0"}
        )
        == "fp32"
    )
