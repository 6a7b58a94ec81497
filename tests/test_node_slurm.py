"""A two-node torchrun rendezvous under a real Slurm cluster on this host (tests/slurm_cluster.py):
`srun -N2 torchrun --nnodes 2 --rdzv-backend c10d ...`, gloo on CPU. Skips without Slurm/root."""

import json
import socket
import sys

import pytest
from conftest import FIXTURES, ROOT
from slurm_cluster import require_tools, start_cluster


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    require_tools("munged", "slurmctld", "slurmd", "srun")
    cluster = start_cluster(tmp_path_factory.mktemp("slurm-node"))
    yield cluster
    cluster.stop()


def test_srun_two_nodes_torchrun_c10d(slurm, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.json"
    env = dict(slurm.env, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = slurm.run(
        "srun", "-N2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--time=2",
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=slurm-node-test", "--max-restarts=0",
        str(FIXTURES / "node" / "worker.py"), str(out),
        env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    block = json.loads(out.read_text())["distributed"]
    assert block["world_size"] == 2 and block["backend"] == "gloo"
    assert [x["rank"] for x in block["ranks"]] == [0, 1]
    assert block["allreduce"]["sizes"][0]["busbw_gbps"] > 0
