"""gpucheck on a real two-node Slurm cluster (tests/slurm_cluster.py): `fleet --srun`, drain.

Recorded snapshots stand in for GPU nodes: each node's task runs
`gpucheck check --from-snapshot FIXTURES/$SLURMD_NODENAME.json`, so n1 is a healthy 8x H100
node and n2 an A100 node with uncorrectable ECC errors (another driver, another GPU model).
One cluster serves the whole session; a test that drains a node resumes it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import SNAPSHOTS
from slurm_cluster import NODES, require_tools, start_cluster

from gpucheck.fleet.slurm import decide, drain_reason, parse_node

PY = sys.executable


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


@pytest.fixture
def node_fixtures(tmp_path):
    fx = tmp_path / "fx"
    fx.mkdir()
    shutil.copy(SNAPSHOTS / "healthy_h100_x8.json", fx / "n1.json")
    shutil.copy(SNAPSHOTS / "ecc_errors.json", fx / "n2.json")
    return fx


def test_fleet_srun_names_the_broken_node_shows_drift_and_drains_it(slurm, node_fixtures, tmp_path):
    out = tmp_path / "reports"
    check_args = (
        f"--from-snapshot {node_fixtures}/$SLURMD_NODENAME.json --drain-on-error "
        f"--prometheus {out}/$SLURMD_NODENAME.prom"
    )
    try:
        r = slurm.run(
            PY, "-m", "gpucheck", "fleet", "--json", str(tmp_path / "fleet.json"),
            "--junit", str(tmp_path / "fleet.xml"), "--no-color",
            "--out", str(out), "--check-args", check_args, "--node-timeout", "120",
            "--srun", "-N2",
            timeout=240,
        )  # fmt: skip
        assert r.returncode == 1, r.stdout + r.stderr
        fleet = json.loads((tmp_path / "fleet.json").read_text())
        nodes = {n["name"]: n for n in fleet["nodes"]}
        assert set(nodes) == set(NODES)
        assert nodes["n1"]["status"] == "PASS"
        assert nodes["n2"]["status"] == "FAIL"
        assert "GC302" in nodes["n2"]["errors"]
        drift = {d["field"]: d for d in fleet["drift"]}
        assert {"driver", "gpu_model", "gpu_count"} <= set(drift)
        assert {n["node"] for n in drift["driver"]["nodes"]} == {"n1", "n2"}
        assert fleet["missing"] == [] and fleet["unreadable"] == []
        # the terminal view names the node and shows the drift too
        assert "n2" in r.stdout and "Drift" in r.stdout and "GC302" in r.stdout
        # n2 drained itself with the ids of its errors; n1 is untouched
        assert slurm.reason("n2").startswith("gpucheck: GC302")
        assert "drain" in slurm.state("n2")
        assert slurm.state("n1") == "idle"
        # both nodes' node_exporter files pass the real promtool
        require_tools("promtool")
        for node in NODES:
            prom = out / f"{node}.prom"
            check = subprocess.run(
                ["promtool", "check", "metrics"],
                input=prom.read_text(),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert check.returncode == 0, check.stdout + check.stderr
        # the folder can be aggregated again later, with the same answer
        again = slurm.run(PY, "-m", "gpucheck", "fleet", str(out), "--json", timeout=60)
        assert again.returncode == 1
        assert {n["name"] for n in json.loads(again.stdout)["nodes"]} == set(NODES)
    finally:
        slurm.resume("n2")


def test_a_node_whose_task_fails_is_a_failed_node(slurm, node_fixtures, tmp_path):
    (node_fixtures / "n2.json").unlink()  # n2's check exits 2: its snapshot is not there
    r = slurm.run(
        PY, "-m", "gpucheck", "fleet", "--json", "-", "--out", str(tmp_path / "r"),
        "--check-args", f"--from-snapshot {node_fixtures}/$SLURMD_NODENAME.json",
        "--node-timeout", "120", "--srun", "-N2",
        timeout=240,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    fleet = json.loads(r.stdout)
    nodes = {n["name"]: n for n in fleet["nodes"]}
    assert nodes["n1"]["status"] == "PASS"
    assert nodes["n2"]["status"] == "FAIL"
    assert "exited 2" in nodes["n2"]["problem"]


def test_drain_leaves_a_node_drained_for_another_reason_alone(slurm):
    slurm.run("scontrol", "update", "NodeName=n1", "State=DRAIN", "Reason=fan replacement")
    try:
        env = dict(slurm.env, SLURMD_NODENAME="n1")
        r = slurm.run(
            PY, "-m", "gpucheck", "check", "-q", "--drain-on-error",
            "--from-snapshot", str(SNAPSHOTS / "ecc_errors.json"),
            env=env, timeout=60,
        )  # fmt: skip
        assert r.returncode == 1
        assert "not drained" in r.stderr and "fan replacement" in r.stderr
        assert slurm.reason("n1") == "fan replacement"
    finally:
        slurm.resume("n1")


def test_drain_does_nothing_on_a_healthy_node(slurm):
    env = dict(slurm.env, SLURMD_NODENAME="n1")
    r = slurm.run(
        PY, "-m", "gpucheck", "check", "-q", "--drain-on-error",
        "--from-snapshot", str(SNAPSHOTS / "healthy_h100_x8.json"),
        env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert slurm.state("n1") == "idle"


def test_scontrol_hostnames_agrees_with_our_expansion(slurm):
    from gpucheck.fleet.hostlist import expand_hostlist

    for text in ("gpu[01-03,07],cpu1", "gpu[8-10]", "r[1-2]n[01-02]", "x[3]", "a,b"):
        r = slurm.run("scontrol", "show", "hostnames", text, timeout=10)
        assert list(dict.fromkeys(r.stdout.split())) == expand_hostlist(text), text


# --- the pure parts of the drain, without a cluster -----------------------------------------


SHOW_NODE = """NodeName=n1 Arch=x86_64 CoresPerSocket=1
   State=IDLE+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
   Reason=fan replacement [root@2026-11-28T18:58:01]
"""


def test_parse_node_reads_state_flags_and_reason():
    assert parse_node(SHOW_NODE) == ({"IDLE", "DRAIN"}, "fan replacement")
    assert parse_node("NodeName=n2\n   State=MIXED ThreadsPerCore=1\n") == ({"MIXED"}, None)
    assert parse_node("   State=DOWN* ThreadsPerCore=1\n")[0] == {"DOWN"}


def test_decide_drains_only_nodes_in_service():
    assert decide({"IDLE"}, None) is None
    assert decide({"ALLOCATED"}, None) is None
    assert "another reason: fan" in decide({"IDLE", "DRAIN"}, "fan")
    assert "by gpucheck" in decide({"DRAINED"}, "gpucheck: GC302 x")
    assert decide({"DOWN"}, "Not responding") is not None


def test_drain_reason_is_short_and_one_line():
    reason = drain_reason([("GC302", 'Uncorrectable "ECC"\nerrors ' + "x" * 200), ("GC305", "t")])
    assert reason.startswith("gpucheck: GC302,GC305 Uncorrectable ECC errors")
    assert len(reason) <= 80 and "\n" not in reason and '"' not in reason


# --- one node's task, without a cluster ------------------------------------------------------


def test_a_task_that_times_out_leaves_an_error_file_and_a_failed_node(tmp_path, monkeypatch):
    from gpucheck.cli import main
    from gpucheck.fleet import task

    monkeypatch.setenv("SLURMD_NODENAME", "gpu09")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu[09-10]")
    monkeypatch.setattr(task, "GRACE_S", 0.0)  # the check cannot start in 10 ms: a timeout
    code = task.main(
        ["--out", str(tmp_path), "--timeout", "0.01", "--", "--from-snapshot", "$HOME/x.json"]
    )
    assert code == 1
    assert not (tmp_path / "gpu09.json").exists()
    assert "timed out" in (tmp_path / "gpu09.error").read_text()
    assert (tmp_path / ".nodelist").read_text().strip() == "gpu[09-10]"
    out = tmp_path / "fleet.json"
    assert main(["fleet", str(tmp_path), "--nodes", "gpu[09-10]", "--json", str(out)]) == 1
    fleet = json.loads(out.read_text())
    (node,) = fleet["nodes"]
    assert node["name"] == "gpu09" and node["status"] == "FAIL" and "timed out" in node["problem"]
    assert fleet["missing"] == ["gpu10"]


def test_a_task_writes_the_report_where_the_fleet_reads_it(tmp_path, monkeypatch):
    from gpucheck.fleet import task

    monkeypatch.setenv("SLURMD_NODENAME", "gpu01")
    monkeypatch.setenv("FIXTURE", str(SNAPSHOTS / "healthy_h100_x8.json"))
    assert (
        task.main(["--out", str(tmp_path), "--timeout", "60", "--", "--from-snapshot", "$FIXTURE"])
        == 0
    )
    assert json.loads((tmp_path / "gpu01.json").read_text())["verdict"] == "PASS"


def test_the_fast_node_check_drains_too(slurm):
    # `gpucheck node` is the fast mode meant for HealthCheckProgram (docs/fleet.md)
    env = dict(slurm.env, SLURMD_NODENAME="n1")
    figures = SNAPSHOTS.parent / "node" / "acs_on.json"  # P2P blocked by ACS: an error
    try:
        r = slurm.run(
            PY, "-m", "gpucheck", "node", "-q", "--drain-on-error",
            "--from-snapshot", str(SNAPSHOTS / "healthy_h100_x8.json"),
            "--from-figures", str(figures),
            env=env, timeout=60,
        )  # fmt: skip
        assert r.returncode == 1, r.stderr
        assert slurm.reason("n1").startswith("gpucheck: GC6"), slurm.reason("n1")
    finally:
        slurm.resume("n1")
