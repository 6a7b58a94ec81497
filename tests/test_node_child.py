"""gpucheck/node/_node_child.py for real (a subprocess, by path) against a stand-in torch
(tests/fixtures/node/fake_torch): the figures it prints, and a stage that hangs reported with
its name and every figure measured before it."""

import os
import sys

from conftest import FIXTURES

from gpucheck.node import judge, measure
from gpucheck.node.topology import Topology

FAKE = str(FIXTURES / "node" / "fake_torch")


def env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_TORCH", "NCCL_"))}
    e.update(PYTHONPATH=FAKE, **extra)
    return e


def test_two_gpus_every_figure():
    data, status, error, _ = measure.run_node_child(sys.executable, 60, {"iters": 2}, env())
    assert (status, error) == ("ok", None)
    assert data["nccl_version"] == "2.21.5"
    assert [g["pci_bus_id"] for g in data["gpus"]] == ["0000:18:00.0", "0000:19:00.0"]
    assert all(g["matmul_dtype"] == "bf16" and g["matmul_tflops"] > 0 for g in data["gpus"])
    assert data["p2p"] == [[None, True], [True, None]] and set(data["p2p_copy_gbps"]) == {
        "0-1",
        "1-0",
    }
    sizes = [a["bytes"] for a in data["allreduce"]]
    assert sizes == [1 << 20, 1 << 24, 1 << 26, 1 << 28]
    for a in data["allreduce"]:  # 2 GPUs: busbw = algbw * 2(2-1)/2
        assert abs(a["busbw_gbps"] - a["algbw_gbps"]) < 0.02
    fig = measure.combine(data, status, error, Topology(), host="h", env={})
    assert len(fig.gpus) == 2 and fig.cuda_available and len(fig.allreduce) == 4
    # The stand-in's rates come from sleeps, which a loaded machine stretches unevenly, so the
    # node-median rule (GC613) may fire here; it is judged on recorded figures in test_node_judge.
    assert [f.id for f in judge.judge(fig) if f.id != "GC613"] == ["GC607"]


def test_fast_settings():
    data, status, _, _ = measure.run_node_child(sys.executable, 60, measure.FAST_SETTINGS, env())
    assert status == "ok" and [a["bytes"] for a in data["allreduce"]] == [1 << 20, 1 << 26]


def test_a_hung_p2p_copy_is_named_with_the_figures_before_it():
    data, status, error, seconds = measure.run_node_child(
        sys.executable, 6, {"iters": 1}, env(FAKE_TORCH_HANG="p2p")
    )
    assert status == "timeout" and seconds < 6 + 4
    assert "hung in: P2P copy GPU 0 -> GPU 1" in error
    assert all(g.get("matmul_tflops") for g in data["gpus"])  # measured before the hang
    fig = measure.combine(data, status, error, Topology(), host="h", env={})
    (f,) = [x for x in judge.judge(fig) if x.id == "GC614"]
    assert "P2P copy GPU 0 -> GPU 1" in f.evidence[0]


def test_a_hung_allreduce():
    _, status, error, _ = measure.run_node_child(
        sys.executable, 6, {"iters": 1}, env(FAKE_TORCH_HANG="allreduce")
    )
    assert status == "timeout" and "NCCL all_reduce of 1048576 bytes over 2 GPUs" in error


def test_no_p2p_and_no_torch(tmp_path):
    data, status, _, _ = measure.run_node_child(
        sys.executable, 60, {"iters": 1}, env(FAKE_TORCH_NO_P2P="1")
    )
    assert status == "ok" and data["p2p"] == [[None, False], [False, None]]
    assert data["p2p_copy_gbps"] == {}
    broken = tmp_path / "torch"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('libcudart.so.12: cannot open')\n")
    data, status, error, _ = measure.run_node_child(
        sys.executable, 60, None, dict(os.environ, PYTHONPATH=str(tmp_path))
    )
    assert status == "no-torch" and "libcudart" in error
