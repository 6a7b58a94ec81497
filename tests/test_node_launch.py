"""torchrun for real, on CPU with gloo: 2 local ranks, 2 "nodes" as two agents on one host with
a c10d rendezvous on 127.0.0.1, and the faults (a rank that never joins, one that hangs in
all_reduce, one that crashes, a node that never comes): each reported within the timeout as a
finding naming rank and host, with no process of the run left behind. Bad input: exit 2."""

import json
import os
import socket
import threading
import time

import pytest
from conftest import FIXTURES, ROOT

from gpucheck.errors import UsageError
from gpucheck.node import preflight
from gpucheck.node.launch import LaunchSpec, launch, torchrun_argv
from gpucheck.node.outcome import classify, launch_findings, parse_failures, slow_rank_findings

WORKER = str(FIXTURES / "node" / "worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftovers(marker: str) -> list[int]:
    """Processes whose command line mentions `marker` (each test's own output path)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def spec(out, *, fault="", timeout=60.0, **kw) -> LaunchSpec:
    env = {"NODE_TEST_FAULT": fault, "PYTHONPATH": str(ROOT)}
    return LaunchSpec(
        nproc_per_node=kw.pop("nproc", 2),
        entry=(WORKER,),
        args=(str(out),),
        timeout=timeout,
        extra_env=env,
        **kw,
    )


def test_two_local_ranks_with_gloo(tmp_path):
    out = tmp_path / "out.json"
    o = launch(spec(out))
    assert o.status == "ok", o.stderr_tail
    assert [r.stage for r in o.ranks] == ["done", "done"]
    block = json.loads(out.read_text())["distributed"]
    assert block["world_size"] == 2 and block["backend"] == "gloo"
    assert [r["rank"] for r in block["ranks"]] == [0, 1]
    assert block["ranks"][0]["host"] == socket.gethostname()
    assert block["samples_per_s"] == pytest.approx(201.0)
    assert block["slowest_rank"]["rank"] == 0
    for row in block["allreduce"]["sizes"]:  # nccl-tests: busbw = algbw * 2(n-1)/n, n = 2
        assert row["busbw_gbps"] == pytest.approx(row["algbw_gbps"], rel=1e-3)
        assert row["algbw_gbps"] == pytest.approx(row["bytes"] / row["time_s"] / 1e9, rel=1e-2)
    assert leftovers(str(out)) == []


def test_two_nodes_as_two_agents_on_one_host(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    outcomes = {}

    def node(i):
        s = spec(
            tmp_path / f"out{i}.json", nproc=1, nnodes=2, rdzv_endpoint=endpoint, rdzv_id="t2n"
        )
        outcomes[i] = launch(s)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert {o.status for o in outcomes.values()} == {"ok"}
    (doc,) = [json.loads(p.read_text()) for p in tmp_path.glob("out*.json")]  # rank 0 only
    assert doc["distributed"]["world_size"] == 2
    assert doc["distributed"]["local_world_size"] == 1


def test_a_node_that_never_comes(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    out = tmp_path / "out.json"
    t0 = time.monotonic()
    o = launch(spec(out, nproc=1, nnodes=2, rdzv_endpoint=endpoint, timeout=8))
    assert time.monotonic() - t0 < 8 + 6
    assert o.status == "never-joined"
    (f,) = launch_findings(o)
    assert f.id == "GC620" and endpoint in f.title
    assert leftovers(str(out)) == []


@pytest.mark.parametrize(
    ("fault", "status", "fid", "named"),
    [
        ("nojoin:1", "never-joined", "GC620", "rank 1"),
        ("hang:1", "hung", "GC621", "rank 1"),
        ("crash:1", "crash", "GC622", "rank 1"),
    ],
)
def test_faults_are_reported_within_the_timeout(tmp_path, fault, status, fid, named):
    out = tmp_path / "out.json"
    timeout = 12.0
    t0 = time.monotonic()
    o = launch(spec(out, fault=fault, timeout=timeout))
    took = time.monotonic() - t0
    assert took < timeout + 6, took
    assert o.status == status, (o, o.stderr_tail)
    (f,) = launch_findings(o)
    assert f.id == fid and named in f.title
    assert socket.gethostname() in f.title  # the host is named
    assert "NCCL_DEBUG=INFO" in f.fix
    assert leftovers(str(out)) == []
    if fault.startswith("crash"):
        assert "injected crash in rank 1" in " ".join(f.evidence)


# --- pure: classify recorded torchrun output ------------------------------------------------

TORCHRUN_CRASH = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
finetune FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-28_19:02:37
  host      : gpu-node-3
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 24268)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 24268
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-28_19:02:37
  host      : gpu-node-3
  rank      : 3 (local_rank: 3)
  exitcode  : 1 (pid: 24269)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def test_parse_failures_root_cause_first():
    got = parse_failures(TORCHRUN_CRASH)
    assert [g["rank"] for g in got] == [3, 0]
    assert got[0] == {"rank": 3, "local_rank": 3, "host": "gpu-node-3", "exitcode": 1}


def _status(rank, stage, device=None):
    return {
        "rank": rank,
        "local_rank": rank,
        "host": "gpu-node-3",
        "device": device or f"cuda:{rank}",
        "stage": stage,
    }


def test_classify_crash_names_rank_host_and_gpu():
    statuses = {r: _status(r, "training") for r in range(4)}
    logs = {3: "Traceback...\n[rank3]: torch.OutOfMemoryError: CUDA out of memory.\n"}
    o = classify(
        spec_world=4, nproc_per_node=4, nnodes=1, endpoint=None, returncode=1, timed_out=False,
        start_error=None, stderr=TORCHRUN_CRASH, statuses=statuses, rank_logs=logs,
        duration_s=12.0, timeout=600,
    )  # fmt: skip
    assert o.status == "crash" and o.failed[0] == 3
    (f,) = launch_findings(o)
    assert f.gpu == 3 and "rank 3 (gpu-node-3, cuda:3)" in f.title
    assert any("CUDA out of memory" in e for e in f.evidence)


def test_classify_nccl_watchdog_timeout_is_a_hang_of_the_rank_behind():
    statuses = {0: _status(0, "allreduce"), 1: _status(1, "training")}
    stderr = TORCHRUN_CRASH.replace(
        "rank      : 3 (local_rank: 3)", "rank      : 0 (local_rank: 0)"
    )
    logs = {
        0: "[rank0]:[E] Watchdog caught collective operation timeout: WorkNCCL(OpType=ALLREDUCE) ran for 600000 milliseconds before timing out.\n"
    }
    o = classify(
        spec_world=2, nproc_per_node=2, nnodes=1, endpoint=None, returncode=1, timed_out=False,
        start_error=None, stderr=stderr, statuses=statuses, rank_logs=logs, duration_s=601, timeout=900,
    )  # fmt: skip
    assert o.status == "hung" and o.hung == (1,)
    (f,) = launch_findings(o)
    assert f.id == "GC621" and f.gpu == 1


def test_slow_rank():
    block = {
        "slowest_rank": {
            "rank": 2,
            "host": "n1",
            "device": "cuda:2",
            "samples_per_s": 50.0,
            "ratio_to_median": 0.5,
        },
        "ranks": [{"rank": r, "samples_per_s": 100.0} for r in range(4)],
    }
    (f,) = slow_rank_findings(block)
    assert f.id == "GC623" and f.gpu == 2
    block["slowest_rank"]["ratio_to_median"] = 0.95
    assert slow_rank_findings(block) == []


def test_torchrun_command_uses_torchruns_own_flags():
    s = LaunchSpec(
        nproc_per_node=8,
        nnodes=2,
        rdzv_endpoint="10.0.0.1:29400",
        rdzv_id="job7",
        args=("--preset", "tiny"),
    )
    argv = torchrun_argv(s, "/tmp/logs")
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    for flag in (
        "--nproc-per-node=8",
        "--nnodes=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.0.1:29400",
        "--rdzv-id=job7",
    ):
        assert flag in argv
    assert argv[-4:] == ["-m", "finetune", "--preset", "tiny"]
    assert "--standalone" in torchrun_argv(LaunchSpec(nproc_per_node=2), "/tmp/logs")


# --- bad input: one line, exit 2 ------------------------------------------------------------


def test_preflight():
    with pytest.raises(UsageError, match="at least 1"):
        preflight.check_nproc(0, 0)
    with pytest.raises(UsageError, match="only 2 usable GPU"):
        preflight.check_nproc(4, 2)
    preflight.check_nproc(4, 0)  # CPU ranks (gloo) are not limited by GPUs
    for bad in ("nohostport:", "host:port", "host:70000", ":29400"):
        with pytest.raises(UsageError):
            preflight.parse_endpoint(bad)
    assert preflight.parse_endpoint("[::1]:29500") == ("::1", 29500)
    assert preflight.parse_endpoint("node1") == ("node1", 29400)
    with pytest.raises(UsageError, match="does not resolve"):
        preflight.check_endpoint("no-such-host.invalid:29400", 2)
    with pytest.raises(UsageError, match="cannot connect"):
        preflight.check_endpoint("192.0.2.1:29400", 2, connect_window=1)  # TEST-NET-1


def test_port_in_use_names_the_holder():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} is already in use by pid {os.getpid()}"):
            preflight.check_endpoint(f"127.0.0.1:{port}", 1)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--nproc-per-node", "0"], "needs at least 1 process"),
        (["--nnodes", "2"], "needs --rdzv-endpoint"),
        (["--bench-device", "cpu", "--nproc-per-node", "2"], "drop it to run several ranks"),
    ],
)
def test_bad_launch_flags_exit_2(capsys, argv, words):
    from gpucheck.cli import main

    code = main(["bench", "--no-color", "--torch-timeout", "30", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
