"""`python -m finetune` under torchrun: DDP with gloo on 2 CPU ranks, rank 0's `distributed`
block; and finetune.distributed's no-op contract for a single process."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, healthy_gpu_snapshot

from finetune import distributed as dd
from gpucheck.bench_judge import bench_findings
from gpucheck.node.bench_glue import ranks_for, run_distributed_bench


def cpu_snapshot():
    return dataclasses.replace(healthy_gpu_snapshot(), torch_runtime=None)


def test_ddp_two_cpu_ranks_through_gpucheck():
    r = run_distributed_bench(
        cpu_snapshot(), 2, {"nproc_per_node": 2}, preset="tiny", timeout=300,
        extra_args=["--max-steps", "12"],
    )  # fmt: skip
    assert r.status in ("ok", "gate-failed"), (r.error, r.stderr_tail)
    doc = r.result
    block = doc["distributed"]
    assert block["world_size"] == 2 and block["backend"] == "gloo"
    ranks = block["ranks"]
    assert [x["rank"] for x in ranks] == [0, 1] and {x["device"] for x in ranks} == {"cpu"}
    assert all(x["steps"] == 12 for x in ranks)  # each rank trains its own share, in step
    assert block["samples_per_s"] == pytest.approx(sum(x["samples_per_s"] for x in ranks))
    assert block["slowest_rank"]["rank"] in (0, 1)
    sizes = block["allreduce"]["sizes"]
    assert [s["bytes"] for s in sizes] == list(dd.ALLREDUCE_SIZES)
    assert all(s["busbw_gbps"] == pytest.approx(s["algbw_gbps"], rel=1e-3) for s in sizes)  # n=2
    assert doc["eval"]["f1"] is not None  # rank 0 evaluated
    # a failed gate is a verdict (GC401), not a crash of the run (GC622)
    assert not [f for f in bench_findings([r]) if f.id.startswith("GC62")]


def test_single_process_has_no_distributed_block(tmp_path):
    out = tmp_path / "one.json"
    subprocess.run(
        [sys.executable, "-m", "finetune", "--preset", "tiny", "--max-steps", "2", "--device",
         "cpu", "--json", str(out), "--no-progress", "--quiet"],
        cwd=ROOT, timeout=240, check=False,
    )  # fmt: skip
    assert "distributed" not in json.loads(out.read_text())


def test_a_single_process_is_untouched(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = dd.setup("cpu")
    assert not dist.enabled and dist.is_main and dist.backend is None
    model = torch.nn.Linear(2, 2)
    assert dd.wrap(model, dist) is model
    assert dd.shard([1, 2, 3], dist) == [1, 2, 3]
    assert dd.gather({"a": 1}, dist) == [{"a": 1}]
    assert dd.finish(dist, {}) is None and dd.allreduce_bench(dist) is None
    assert dd.device_spec(dist, "cuda:1") == "cuda:1"
    assert dd.per_rank(10, dist) == 10


def test_shard_gives_every_rank_the_same_count():
    batches = list(range(7))
    shards = [dd.shard(batches, dd.Dist(rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # wraps around like DistributedSampler
    assert set().union(*map(set, shards)) == set(batches)
    assert dd.per_rank(7, dd.Dist(world_size=3)) == 3


def test_busbw_formula():
    assert dd.busbw(100.0, 8) == pytest.approx(175.0)  # 2(n-1)/n = 1.75
    assert dd.busbw(100.0, 1) == 100.0


def test_bad_world_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(dd.DistError, match="WORLD_SIZE"):
        dd.setup("cpu")


def test_default_is_every_gpu_on_a_multi_gpu_machine():
    snap = healthy_gpu_snapshot(4)
    assert ranks_for(snap, None, {}) == 4  # the command line passes its (empty) options
    assert ranks_for(snap, "cuda:1", {}) is None  # one named device: the old path
    assert ranks_for(snap, None, None) is None  # a caller that is not the command line
    assert ranks_for(cpu_snapshot(), None, {}) is None
