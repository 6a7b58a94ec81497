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
