"""`gpucheck fleet REPORT... | DIR...`: per-node lines, drift, outliers, missing, unreadable.

Node reports are made by the real `gpucheck check --from-snapshot ... --json` on the recorded
snapshots; identity and benchmark figures are then set in the JSON, as a node would record them.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from conftest import ROOT, SCHEMAS, SNAPSHOTS

from gpucheck.cli import main
from gpucheck.fleet.aggregate import aggregate
from gpucheck.fleet.cli import read_all
from gpucheck.fleet.schema import fleet_schema
from gpucheck.fleet.summary import Unreadable, read_report

HEALTHY = SNAPSHOTS / "healthy_h100_x8.json"
BROKEN = SNAPSHOTS / "ecc_errors.json"
_CACHE: dict[str, str] = {}


def report_doc(snapshot=HEALTHY) -> dict:
    key = str(snapshot)
    if key not in _CACHE:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            main(["check", "--from-snapshot", key, "--json", "-q"])
        _CACHE[key] = buf.getvalue()
    return json.loads(_CACHE[key])


def write_report(folder, stem, snapshot=HEALTHY, *, slurm=None, host=None, samples=None, **cfg):
    doc = report_doc(snapshot)
    snap = doc["snapshot"]
    if slurm or host:
        snap["identity"] = {"hostname": host, "slurm_node_name": slurm, "machine_id": None}
    if "driver" in cfg:
        snap["driver"]["version"] = cfg["driver"]
    if "vbios" in cfg:
        for g in snap["gpus"]:
            g["vbios_version"] = cfg["vbios"]
    if samples is not None:
        doc["bench"] = [
            {
                "device": f"cuda:{i}",
                "gpu_name": "NVIDIA H100 80GB HBM3",
                "preset": "base",
                "status": "ok",
                "duration_s": 30.0,
                "error": None,
                "result": {"train": {"samples_per_s": s}, "eval": {"f1": 0.9}},
            }
            for i, s in enumerate(samples)
        ]
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(doc))
    return path


def fleet(capsys, *argv) -> tuple[int, dict, str]:
    code = main(["fleet", *map(str, argv), "--json", "-"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    doc = json.loads(out) if out.strip().startswith("{") else {}
    if doc:
        jsonschema.validate(doc, fleet_schema())
    return code, doc, err


def test_published_fleet_schema_matches_the_code():
    # regenerate with `python -m gpucheck.fleet.schema docs/schema`
    assert json.loads((SCHEMAS / "fleet.schema.json").read_text()) == fleet_schema()


def test_a_fleet_of_healthy_nodes_passes(tmp_path, capsys):
    for i in (1, 2, 3):
        write_report(tmp_path, f"r{i}", slurm=f"gpu{i:02d}", samples=[100.0 + i])
    code, doc, _ = fleet(capsys, tmp_path, "--nodes", "gpu[01-03]")
    assert code == 0
    assert doc["verdict"] == "PASS"
    assert [n["name"] for n in doc["nodes"]] == ["gpu01", "gpu02", "gpu03"]  # identity, not file
    assert doc["drift"] == [] and doc["missing"] == [] and doc["outliers"] == []
    assert doc["nodes"][0]["samples_per_s"] == 101.0


def test_a_failed_node_fails_the_fleet_with_its_error_ids(tmp_path, capsys):
    write_report(tmp_path, "gpu01")
    write_report(tmp_path, "gpu02", BROKEN)
    code, doc, _ = fleet(capsys, tmp_path)
    assert code == 1 and doc["verdict"] == "FAIL"
    bad = {n["name"]: n for n in doc["nodes"]}["gpu02"]
    assert bad["status"] == "FAIL" and {"GC302", "GC305"} <= set(bad["errors"])


def test_names_fall_back_to_the_file_name_when_missing_or_shared(tmp_path, capsys):
    write_report(tmp_path, "a", slurm="same")
    write_report(tmp_path, "b", slurm="same")
    write_report(tmp_path, "gpu07")  # no identity at all
    write_report(tmp_path, "c", host="node9.cluster.example")
    _, doc, _ = fleet(capsys, tmp_path)
    assert sorted(n["name"] for n in doc["nodes"]) == ["a", "b", "gpu07", "node9"]


def test_drift_names_the_nodes_that_differ_from_the_majority(tmp_path, capsys):
    for i in range(1, 4):
        write_report(tmp_path, f"gpu{i}", driver="570.133.20")
    write_report(tmp_path, "gpu4", driver="550.54.14")
    code, doc, _ = fleet(capsys, tmp_path)
    assert code == 0 and doc["verdict"] == "WARN"  # drift warns; --strict fails
    (drift,) = doc["drift"]
    assert drift["field"] == "driver" and drift["majority"] == "570.133.20"
    assert drift["nodes"] == [{"node": "gpu4", "value": "550.54.14"}]
    assert fleet(capsys, tmp_path, "--strict")[0] == 1


def test_vbios_drift_from_what_the_probe_records(tmp_path, capsys):
    import dataclasses

    from gpucheck.snapshot import Gpu

    # the field the NVML probe fills (nvmlDeviceGetVbiosVersion) is the one the fleet compares
    assert "vbios_version" in {f.name for f in dataclasses.fields(Gpu)}
    for i in range(1, 4):
        write_report(tmp_path, f"gpu{i}", vbios="96.00.74.00.1C")
    write_report(tmp_path, "gpu4", vbios="96.00.61.00.01")
    code, doc, _ = fleet(capsys, tmp_path)
    (drift,) = doc["drift"]
    assert drift["field"] == "vbios" and drift["majority"] == "96.00.74.00.1C"
    assert drift["nodes"] == [{"node": "gpu4", "value": "96.00.61.00.01"}]
    golden = tmp_path.parent / "golden.json"
    golden.write_text(json.dumps({"vbios": "96.00.74.00.1C"}))
    code, doc, _ = fleet(capsys, tmp_path, "--expect", golden)
    assert code == 1 and [n["name"] for n in doc["nodes"] if n["status"] == "FAIL"] == ["gpu4"]


def test_expect_golden_config_fails_the_nodes_that_differ(tmp_path, capsys):
    write_report(tmp_path, "gpu1")
    write_report(tmp_path, "gpu2", driver="550.54.14")
    golden = tmp_path / "golden.conf"
    golden.write_text(
        json.dumps({"driver": "570.133.20", "gpu_count": 8, "torch": ["2.9.1+cu128"]})
    )
    code, doc, _ = fleet(capsys, tmp_path, "--expect", golden)
    assert code == 1
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["gpu1"]["status"] == "PASS"
    assert nodes["gpu2"]["status"] == "FAIL"
    assert nodes["gpu2"]["expect_mismatches"] == ["driver 550.54.14 (expected 570.133.20)"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"driverx": "1"}', "unknown field"),
        ("[1]", "JSON object"),
        ('{"driver": true}', "must be a string"),
        ("{", "not valid JSON"),
    ],
)
def test_a_bad_expect_file_is_a_usage_error(tmp_path, capsys, content, message):
    write_report(tmp_path, "gpu1")
    golden = tmp_path / "golden.conf"
    golden.write_text(content)
    code, _, err = fleet(capsys, tmp_path, "--expect", golden)
    assert code == 2 and message in err


def test_outliers_are_gpus_more_than_10_percent_below_the_model_median(tmp_path, capsys):
    write_report(tmp_path, "gpu1", samples=[100.0, 101.0])
    write_report(tmp_path, "gpu2", samples=[99.0, 100.0])
    write_report(tmp_path, "gpu3", samples=[100.0, 85.0])  # 15% below: the one slow GPU
    code, doc, _ = fleet(capsys, tmp_path)
    assert code == 0 and doc["verdict"] == "WARN"
    (o,) = doc["outliers"]
    assert (o["node"], o["gpu"], o["metric"]) == ("gpu3", "cuda:1", "samples_per_s")
    assert o["median"] == 100.0 and o["ratio"] == 0.85


def test_two_gpus_cannot_say_which_one_is_slow(tmp_path, capsys):
    write_report(tmp_path, "gpu1", samples=[100.0])
    write_report(tmp_path, "gpu2", samples=[50.0])
    assert fleet(capsys, tmp_path)[1]["outliers"] == []


def test_missing_nodes_from_a_hostlist(tmp_path, capsys):
    write_report(tmp_path, "gpu01")
    write_report(tmp_path, "gpu03")
    code, doc, _ = fleet(capsys, tmp_path, "--nodes", "gpu[01-03,07]")
    assert code == 1
    assert doc["missing"] == ["gpu02", "gpu07"]


def test_missing_nodes_of_the_slurm_job_it_runs_in(tmp_path, capsys, monkeypatch):
    write_report(tmp_path, "gpu1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[1-2]")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "none.conf"))  # scontrol fails: our expansion
    code, doc, _ = fleet(capsys, tmp_path)
    assert code == 1 and doc["missing"] == ["gpu2"]


@pytest.mark.parametrize(
    "content, reason",
    [
        ('{"schema_version": 1, "tool": {"name": "gpu', "truncated"),
        ("", "not valid JSON"),
        ('{"hello": "world"}', "not a gpucheck report"),
        ("[1, 2]", "not an object"),
        (b"\xff\xfe\x00", "not UTF-8"),
        ("[" * 100000, "nested too deeply"),
    ],
)
def test_an_unreadable_report_is_named_and_the_rest_aggregated(tmp_path, capsys, content, reason):
    write_report(tmp_path, "gpu1")
    bad = tmp_path / "gpu2.json"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, doc, _ = fleet(capsys, tmp_path, "--nodes", "gpu[1-2]")
    assert code == 1
    assert [n["name"] for n in doc["nodes"]] == ["gpu1"]
    (u,) = doc["unreadable"]
    assert u["name"] == "gpu2" and reason in u["reason"]
    assert doc["missing"] == []  # unreadable, not also missing


def test_future_schema_and_snapshot_files_are_unreadable_with_the_reason(tmp_path):
    doc = report_doc()
    doc["schema_version"] = 99
    (tmp_path / "future.json").write_text(json.dumps(doc))
    doc = report_doc()
    doc["snapshot"]["schema_version"] = 99
    (tmp_path / "future_snap.json").write_text(json.dumps(doc))
    (tmp_path / "snap.json").write_text(HEALTHY.read_text())
    doc = report_doc()
    doc["snapshot"]["gpus"] = "eight"
    (tmp_path / "mangled.json").write_text(json.dumps(doc))
    reasons = {p.stem: read_report(str(p)) for p in tmp_path.iterdir()}
    assert all(isinstance(r, Unreadable) for r in reasons.values())
    assert "newer than this gpucheck" in reasons["future"].reason
    assert "newer than this gpucheck" in reasons["future_snap"].reason
    assert "a snapshot, not a report" in reasons["snap"].reason
    assert "gpus" in reasons["mangled"].reason


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "name report files"),
        (["/nonexistent/x.json"], "no such report"),
        (["--nodes", "gpu[1-"], "--nodes"),
        (["DIR", "--srun", "-N2"], "not both"),
    ],
)
def test_usage_errors_exit_2(tmp_path, capsys, argv, message):
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    code = main(["fleet", *argv])
    _, err = capsys.readouterr()
    assert code == 2 and message in err


def test_an_empty_folder_is_a_usage_error_unless_nodes_are_expected(tmp_path, capsys):
    assert main(["fleet", str(tmp_path)]) == 2
    code, doc, _ = fleet(capsys, tmp_path, "--nodes", "gpu1")
    assert code == 1 and doc["missing"] == ["gpu1"]


def test_markdown_and_junit_one_test_case_per_node(tmp_path, capsys):
    reports = tmp_path / "r"
    reports.mkdir()
    write_report(reports, "gpu1")
    write_report(reports, "gpu2", BROKEN)
    (reports / "gpu3.json").write_text("{")
    code = main(
        [
            "fleet",
            str(reports),
            "--nodes",
            "gpu[1-4]",
            "--markdown",
            str(tmp_path / "f.md"),
            "--junit",
            str(tmp_path / "f.xml"),
            "--no-color",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 1
    assert out.splitlines()[0].startswith(" FAIL ")  # the terminal view, verdict first
    md = (tmp_path / "f.md").read_text()
    assert "**FAIL**" in md and "| gpu2 | FAIL |" in md and "gpu4" in md
    suite = ET.fromstring((tmp_path / "f.xml").read_text())
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"gpu1", "gpu2", "gpu3", "gpu4"}
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    assert failed == {"gpu2", "gpu3", "gpu4"}
    assert suite.get("failures") == "3" and suite.get("tests") == "4"


def test_aggregate_streams_its_input_once(tmp_path):
    paths = [str(write_report(tmp_path, f"gpu{i}")) for i in range(3)]
    items = read_all(paths)
    assert iter(items) is items  # a generator: one report read at a time
    report = aggregate(items)
    assert len(report.nodes) == 3
    assert next(items, None) is None


def test_matmul_outliers_from_node_reports(tmp_path, capsys):
    # `gpucheck node` reports carry the measured figures: GPU 5 of this recorded 8x H100 node
    # reaches 642 TFLOPS against ~760 for its peers, on every node that reports it.
    figures = ROOT / "tests" / "fixtures" / "node" / "h100_sxm_x8.json"
    for i in (1, 2, 3):
        code = main(
            [
                "node",
                "--from-snapshot",
                str(HEALTHY),
                "--from-figures",
                str(figures),
                "-q",
                "--json",
                str(tmp_path / f"gpu{i}.json"),
            ]
        )
        assert code in (0, 1)
    _, doc, _ = fleet(capsys, tmp_path)
    matmul = [o for o in doc["outliers"] if o["metric"] == "matmul_tflops"]
    assert sorted((o["node"], o["gpu"]) for o in matmul) == [
        ("gpu1", "5"),
        ("gpu2", "5"),
        ("gpu3", "5"),
    ]
    assert all(o["value"] == 642.0 and o["model"] == "NVIDIA H100 80GB HBM3" for o in matmul)


def test_hostile_strings_in_a_report_reach_no_terminal_xml_or_markup(tmp_path, capsys):
    evil = "\x1b[31mgpu9\x1b[0m[bold]\x00</testcase>\x07"
    write_report(tmp_path, "a", slurm=evil, driver="550\x1b]0;title\x07.1")
    write_report(tmp_path, "b", BROKEN)
    junit = tmp_path / "f.xml"
    assert main(["fleet", str(tmp_path), "--junit", str(junit), "--no-color"]) == 1
    out, _ = capsys.readouterr()
    assert "\x1b" not in out and "\x07" not in out and "\x00" not in out
    assert "gpu9[bold]</testcase>" in out  # shown as text, not taken as rich markup
    cases = [c.get("name") for c in ET.fromstring(junit.read_text()).iter("testcase")]
    assert "gpu9[bold]</testcase>" in cases


def test_a_slow_node_is_an_outlier_among_nodes_of_the_same_shape(tmp_path, capsys):
    write_report(tmp_path, "gpu1", samples=[100.0, 100.0])
    write_report(tmp_path, "gpu2", samples=[101.0, 99.0])
    write_report(tmp_path, "gpu3", samples=[89.0, 89.0])  # each GPU 11% slow, and the node
    _, doc, _ = fleet(capsys, tmp_path)
    node = [o for o in doc["outliers"] if o["metric"] == "node_samples_per_s"]
    assert [(o["node"], o["gpu"], o["model"]) for o in node] == [
        ("gpu3", "all", "8x NVIDIA H100 80GB HBM3")
    ]
    assert {o["gpu"] for o in doc["outliers"] if o["metric"] == "samples_per_s"} == {
        "cuda:0",
        "cuda:1",
    }


def test_srun_refuses_a_folder_that_already_holds_reports(tmp_path, capsys):
    (tmp_path / "gpu1.error").write_text("timed out\n")
    code = main(["fleet", "--out", str(tmp_path), "--srun", "-N2"])
    assert code == 2 and "already holds reports" in capsys.readouterr().err
