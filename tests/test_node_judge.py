"""GC6xx judging on recorded node figures (tests/fixtures/node/*.json), NVML topology through a
fake pynvml, and the sysfs/lspci readers on fake trees: all without a GPU."""

import dataclasses
import json
import os

import pytest
from conftest import FIXTURES
from fakes.fake_pynvml import FakeGpu, FakeNvml

from gpucheck.findings import Severity
from gpucheck.node import expected, judge, measure, sysfs
from gpucheck.node.figures import FiguresError, NodeFigures
from gpucheck.node.topology import read_topology

NODE = FIXTURES / "node"


def load(name: str) -> NodeFigures:
    return NodeFigures.from_dict(json.loads((NODE / f"{name}.json").read_text()))


def ids(findings) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in findings:
        out.setdefault(f.id, []).append(f)
    return out


def test_h100_sxm_node_names_only_the_slow_gpu():
    got = ids(judge.judge(load("h100_sxm_x8")))
    assert set(got) == {"GC607", "GC613"}
    (slow,) = got["GC613"]
    assert slow.gpu == 5 and "h100-node-07" in slow.title
    assert got["GC607"][0].severity is Severity.INFO and "2.21.5" in got["GC607"][0].title


def test_h100_nvlink_down_and_missing_links():
    fig = load("h100_sxm_x8")
    gpus = list(fig.gpus)
    gpus[3] = dataclasses.replace(gpus[3], nvlink_active=16, nvlink_down=(4, 5))
    gpus[6] = dataclasses.replace(gpus[6], nvlink_active=12)
    got = ids(judge.judge(dataclasses.replace(fig, gpus=tuple(gpus))))
    by_gpu = {f.gpu: f for f in got["GC605"]}
    assert by_gpu[3].severity is Severity.ERROR and "2 NVLink link(s) down" in by_gpu[3].title
    assert by_gpu[6].severity is Severity.WARN and "the model has 18" in by_gpu[6].title


def test_h100_allreduce_below_the_sourced_figure():
    fig = load("h100_sxm_x8")
    slow = tuple(dataclasses.replace(a, busbw_gbps=a.busbw_gbps / 4) for a in fig.allreduce)
    (f,) = ids(judge.judge(dataclasses.replace(fig, allreduce=slow)))["GC610"]
    assert "nccl-tests#212" in " ".join(f.evidence)
    assert "90.5 GB/s" in f.title  # the 256 MiB figure, a quarter of 361.9


def test_a100_pcie_box_p2p_disabled_and_slow_host_link():
    got = ids(judge.judge(load("a100_pcie_x4")))
    assert set(got) == {"GC601", "GC607", "GC611"}
    assert "NCCL_P2P_DISABLE" in got["GC601"][0].fix
    assert [f.gpu for f in got["GC611"]] == [2]


def test_a100_pcie_allreduce_judged_against_the_pcie_link():
    fig = load("a100_pcie_x4")
    slow = tuple(dataclasses.replace(a, busbw_gbps=6.0) for a in fig.allreduce)
    (f,) = ids(judge.judge(dataclasses.replace(fig, allreduce=slow)))["GC610"]
    assert "PCIe link 31.5 GB/s" in " ".join(f.evidence)


def test_rtx4090_box_without_p2p_is_info_not_a_warning():
    got = ids(judge.judge(load("rtx4090_x2")))
    assert set(got) == {"GC607", "GC608", "GC609"}
    assert got["GC609"][0].severity is Severity.INFO
    # no P2P: the all_reduce goes through the host, so it is not judged against the link
    assert "GC610" not in got


def test_datacenter_gpus_without_p2p_warn():
    fig = load("a100_pcie_x4")
    p2p = tuple(tuple(None if i == j else (i // 2 == j // 2) for j in range(4)) for i in range(4))
    got = ids(judge.judge(dataclasses.replace(fig, p2p=p2p, env={})))
    assert got["GC609"][0].severity is Severity.WARN
    assert "0-2" in got["GC609"][0].evidence[0]


def test_acs_box():
    got = ids(judge.judge(load("acs_on")))
    assert set(got) == {"GC602", "GC603", "GC604", "GC606", "GC607", "GC614"}
    acs = got["GC603"][0]
    assert "setpci -s 0000:16:00.0 ECAP_ACS+0x6.w=0000" in acs.fix
    assert "0000:15:00.0" not in acs.fix  # a bridge with ACS off is not named
    assert "P2P copy GPU 0 -> GPU 1" in got["GC614"][0].evidence[0]


def test_p2p_copy_error_names_the_pair():
    fig = dataclasses.replace(
        load("a100_pcie_x4"), p2p_copy_errors={"1-3": "CUDA error: an illegal memory access"}
    )
    (f,) = [x for x in judge.judge(fig) if x.id == "GC609"]
    assert f.severity is Severity.ERROR and f.gpu == 1


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("eth", True),
        ("ib0,eth0", True),
        ("ens5f0", False),
        ("^lo,docker", True),
        ("^eth,lo", False),
        ("=eth", False),
        ("=eth0", True),
    ],
)
def test_socket_ifname(value, ok):
    assert judge.socket_ifname_matches(value, ("eth0", "lo")) is ok


def test_nccl_env_flags_and_shm_in_container_left_to_gc112():
    fig = load("rtx4090_x2")
    env = {"NCCL_SHM_DISABLE": "1", "NCCL_IB_DISABLE": "true", "NCCL_P2P_LEVEL": "LOC"}
    got = ids(judge.judge(dataclasses.replace(fig, env=env, in_container=True)))
    assert "GC608" not in got
    ev = " ".join(got["GC601"][0].evidence)
    assert "NCCL_SHM_DISABLE" in ev and "NCCL_IB_DISABLE" in ev and "NCCL_P2P_LEVEL" in ev


def test_single_gpu_and_cpu_nodes_have_no_findings():
    assert judge.judge(NodeFigures()) == []
    fig = load("h100_sxm_x8")
    one = dataclasses.replace(fig, gpus=fig.gpus[:1], p2p=(), allreduce=(), topology={})
    assert ids(judge.judge(one)) == {}


def test_figures_round_trip_and_bad_input():
    fig = load("acs_on")
    assert NodeFigures.from_dict(json.loads(json.dumps(fig.to_dict()))) == fig
    with pytest.raises(FiguresError):
        NodeFigures.from_dict({"gpus": []})
    odd = NodeFigures.from_dict(
        {"schema_version": 1, "gpus": [{"index": 0, "h2d_gbps": "fast"}], "p2p": [[1, True]]}
    )
    assert odd.gpus[0].h2d_gbps is None and odd.p2p == ((None, True),)


def test_every_expectation_has_a_source():
    t = expected.table()
    for block in ("pcie", "allreduce", "matmul", "shm", "p2p_by_design_absent"):
        assert t[block]["source"]
    assert all(r["source"] for r in t["nvlink_links"] + t["allreduce"]["nvlink"])
    assert expected.pcie_link_gbps(4, 16) == pytest.approx(31.5, abs=0.1)
    assert expected.matmul_peak("NVIDIA H100 80GB HBM3", "bf16")[0] == 989.0


# --- NVML topology through a fake pynvml ----------------------------------------------------


class TopoNvml(FakeNvml):
    """FakeNvml plus the topology and NVLink calls the node room reads."""

    def __init__(self, gpus, links, levels, **kw):
        super().__init__(gpus, **kw)
        self.links = links  # gpu index -> list of (state, peer index) per link
        self.levels = levels  # (i, j) -> NVML topology level

    def nvmlDeviceGetNvLinkState(self, h, link):
        rows = self.links.get(h, [])
        if link >= len(rows):
            raise self.NVMLError(3)  # NotSupported: no such link
        return rows[link][0]

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h, link):
        from types import SimpleNamespace

        return SimpleNamespace(busId=self.gpus[self.links[h][link][1]].bus_id)

    def nvmlDeviceGetTopologyCommonAncestor(self, a, b):
        return self.levels[(a, b)]


def _bus(i):
    return f"00000000:{0x18 + i:02X}:00.0".encode()


def test_nvlink_topology_from_nvml():
    gpus = [FakeGpu(bus_id=_bus(i)) for i in range(3)]
    # GPUs 0 and 1: 2 links, one of GPU 1's is down; GPU 2: PCIe only
    links = {0: [(1, 1), (1, 1)], 1: [(1, 0), (0, 0)]}
    nv = TopoNvml(gpus, links, {(0, 2): 30, (1, 2): 50})
    topo = read_topology(nv)
    assert topo.error is None
    assert topo.pairs == {"0-1": "NV2", "0-2": "PHB", "1-2": "SYS"}
    assert topo.gpus[1]["nvlink_active"] == 1 and topo.gpus[1]["nvlink_down"] == [1]
    assert topo.gpus[2]["nvlink_active"] is None  # no NVLink at all
    assert topo.gpus[0]["pci_bus_id"] == "0000:18:00.0" and topo.gpus[0]["pcie_gen_max"] == 5
    assert nv.shutdown_calls == 1


def test_nvml_errors_are_data():
    topo = read_topology(FakeNvml(init_error="DriverNotLoaded"))
    assert topo.error == "nvmlInit: DriverNotLoaded" and topo.pairs == {}


def test_combine_matches_child_figures_by_bus_id():
    nv = TopoNvml([FakeGpu(bus_id=_bus(i)) for i in range(2)], {}, {(0, 1): 10})
    topo = read_topology(nv)
    child = {
        "cuda_available": True,
        "gpus": [  # CUDA's order differs from PCI order here
            {
                "index": 0,
                "pci_bus_id": "0000:19:00.0",
                "matmul_tflops": 700.0,
                "matmul_dtype": "bf16",
            },
            {
                "index": 1,
                "pci_bus_id": "0000:18:00.0",
                "matmul_tflops": 500.0,
                "matmul_dtype": "bf16",
            },
        ],
        "p2p": [[None, True], [True, None]],
    }
    fig = measure.combine(
        child, "ok", None, topo, host="h", env={"NCCL_DEBUG": "INFO", "HOME": "/"}
    )
    assert [g.matmul_tflops for g in fig.gpus] == [500.0, 700.0]
    assert fig.topology == {"0-1": "PIX"} and fig.env == {"NCCL_DEBUG": "INFO"}


# --- sysfs and lspci ------------------------------------------------------------------------

LSPCI_ACS = """\
0000:16:00.0 PCI bridge: PLX Technology, Inc. PEX 8747 48-Lane, 5-Port PCI Express Gen 3 (8.0 GT/s) Switch (rev ca)
\tCapabilities: [148 v1] Access Control Services
\t\tACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl+ DirectTrans+
\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-
"""


def test_parse_acsctl():
    assert sysfs.parse_acsctl(LSPCI_ACS) == ("SrcValid", "ReqRedir", "CmpltRedir", "UpstreamFwd")
    assert sysfs.parse_acsctl("\tCapabilities: <access denied>\n") is None


def test_bridges_and_iommu_from_a_fake_sysfs(tmp_path):
    dev = tmp_path / "sys/devices/pci0000:00/0000:00:01.0/0000:15:00.0/0000:16:00.0/0000:17:00.0"
    dev.mkdir(parents=True)
    group = tmp_path / "sys/kernel/iommu_groups/7"
    group.mkdir(parents=True)
    (group / "type").write_text("DMA-FQ\n")
    os.symlink(group, dev / "iommu_group")
    links = tmp_path / "sys/bus/pci/devices"
    links.mkdir(parents=True)
    os.symlink(dev, links / "0000:17:00.0")
    root = str(tmp_path)
    assert sysfs.upstream_bridges("0000:17:00.0", root) == [
        "0000:00:01.0",
        "0000:15:00.0",
        "0000:16:00.0",
    ]
    assert sysfs.iommu_mode("0000:17:00.0", root) == "DMA-FQ"
    assert sysfs.iommu_mode("0000:99:00.0", root) is None
    lspci = tmp_path / "lspci"
    lspci.write_text(f"#!/bin/sh\ncat <<'EOF'\n{LSPCI_ACS}EOF\n")
    lspci.chmod(0o755)
    bridges, readable = sysfs.bridges_above(["0000:17:00.0"], root, lspci=str(lspci))
    assert readable is True and len(bridges) == 3
    assert bridges[2]["acs_ctl"][:1] == ["SrcValid"] and bridges[2]["gpus"] == ["0000:17:00.0"]


# --- gpucheck node on recorded figures ------------------------------------------------------


def test_gpucheck_node_on_recorded_figures(tmp_path, capsys):
    from conftest import SNAPSHOTS

    from gpucheck.cli import main

    out = tmp_path / "report.json"
    argv = ["node", "-q", "--from-snapshot", str(SNAPSHOTS / "healthy_h100_x8.json")]
    code = main([*argv, "--from-figures", str(NODE / "acs_on.json"), "--json", str(out)])
    doc = json.loads(out.read_text())
    assert code == 1 and doc["command"] == "node" and doc["verdict"] == "FAIL"
    assert {"GC602", "GC603", "GC614"} <= {f["id"] for f in doc["findings"]}
    assert doc["node"]["host"] == "ws-acs"
    bad = tmp_path / "bad.json"
    bad.write_text('{"gpus": []}')
    assert main([*argv, "--from-figures", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "node figures" in err[0]


def test_check_judges_the_host_side_on_a_multi_gpu_machine(monkeypatch, tmp_path):
    from conftest import healthy_gpu_snapshot

    monkeypatch.setenv("NCCL_P2P_DISABLE", "1")
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "=nosuch0")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    snap = healthy_gpu_snapshot(2)
    gpus = (snap.gpus[0], dataclasses.replace(snap.gpus[1], name="NVIDIA A100-SXM4-80GB"))
    got = ids(measure.host_findings(dataclasses.replace(snap, gpus=gpus)))
    assert {"GC601", "GC602", "GC606"} <= set(got)
    assert measure.host_findings(healthy_gpu_snapshot(1)) == []
