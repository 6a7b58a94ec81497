"""Checks that need a real NVIDIA GPU. They skip cleanly elsewhere (CI never has one).

Run by `make gpu-check` on a lent GPU machine, whose python has torch, transformers,
nvidia-ml-py, rich, packaging and pytest but nothing else: import nothing more here.
"""

import json
import subprocess
import sys

import pytest

from gpucheck.probe import collect


def _nvml_gpu_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library, no driver, no permission: all mean "no GPU here"
        return 0


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_nvml_gpu_count() == 0, reason="no NVIDIA GPU")]


def test_probe_sees_every_gpu_with_its_fields():
    snap = collect(torch_child=True, torch_timeout=120)
    assert snap.driver.source == "nvml" and snap.driver.version
    assert len(snap.gpus) == _nvml_gpu_count()
    for gpu in snap.gpus:
        assert gpu.error is None
        assert gpu.name and gpu.uuid and gpu.compute_capability
        assert gpu.memory_total_bytes and gpu.memory_total_bytes > 2**30
    rt = snap.torch_runtime
    assert rt is not None and rt.status == "ok", rt
    assert rt.cuda_available and rt.device_count >= 1
    assert all(d.matmul_ok for d in rt.devices)


def test_check_json_on_this_gpu(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpucheck",
            "--json",
            str(out),
            "-q",
            "--bench-preset",
            "tiny",
            "--bench-timeout",
            "240",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    doc = json.loads(out.read_text())
    assert proc.returncode == doc["exit_code"], proc.stderr
    assert doc["bench"] and all(b["status"] == "ok" for b in doc["bench"]), doc["bench"]
    assert all(b["device"].startswith("cuda") for b in doc["bench"])


# --- issue 9 on a real GPU: forced TF32, CUDA vs NVML numbering, sampling, the deadline -------


def test_forced_tf32_does_not_fail_a_healthy_gpu():
    import os

    from gpucheck.diagnose import diagnose

    env = dict(os.environ, TORCH_ALLOW_TF32_CUBLAS_OVERRIDE="1")
    snap = collect(torch_child=True, torch_timeout=120, env=env)
    rt = snap.torch_runtime
    assert rt is not None and rt.status == "ok", rt
    for d in rt.devices:
        assert d.matmul_ok and d.matmul_max_error == 0.0, d
        assert d.matmul_precision == "tf32", d  # the override, recorded
    assert snap.system.env["TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"] == "1"
    assert not [f for f in diagnose(snap) if f.id == "GC215"]


def test_every_cuda_device_joins_its_nvml_gpu():
    import os

    from gpucheck.diagnose import facts

    snap = collect(torch_child=True, torch_timeout=120)
    rt = snap.torch_runtime
    for d in rt.devices:
        assert d.uuid and d.uuid.startswith(("GPU-", "MIG-")), d
        g = facts.nvml_gpu_for_cuda(snap, d.index)
        assert g is not None and g.name == d.name, (d, g)
    # hide all but the last GPU: cuda:0 is then NVML GPU n-1
    last = snap.gpus[-1]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=last.uuid)
    only = collect(torch_child=True, torch_timeout=120, env=env)
    assert only.torch_runtime.device_count == 1
    assert facts.nvml_index(only, 0) == last.index


def test_sampler_sees_the_gpu_under_load():
    import time

    from gpucheck.probe.sampler import NvmlSampler, busy

    code = (
        "import torch, time\n"
        "a = torch.randn(8192, 8192, device='cuda')\n"
        "end = time.time() + 6\n"
        "while time.time() < end:\n"
        "    a = (a @ a).clamp_(-1, 1)\n"
        "torch.cuda.synchronize()\n"
    )
    sampler = NvmlSampler([0], interval=0.25).start()
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    samples = sampler.stop()
    assert sampler.error is None and len(samples) >= 4, samples
    assert time.monotonic() - t0 < 120
    loaded = busy(samples, 50)
    assert loaded, [s.utilization_percent for s in samples]
    assert all(s.pcie_gen_current and s.pcie_width_current for s in loaded)
