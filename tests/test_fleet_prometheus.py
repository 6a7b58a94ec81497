"""`--prometheus FILE`: node_exporter textfile metrics, checked by the real promtool; the alert
rules and the Grafana dashboard in docs/fleet/ refer only to metrics gpucheck writes."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile

import pytest
from conftest import ROOT, SNAPSHOTS
from slurm_cluster import require_tools

from gpucheck.cli import main
from gpucheck.fleet.prometheus import escape_label, render_prometheus

FIXTURES = sorted(p for p in SNAPSHOTS.glob("*.json"))
RULES = ROOT / "docs" / "fleet" / "gpucheck.rules.yml"
DASHBOARD = ROOT / "docs" / "fleet" / "grafana-dashboard.json"
NODE_FIGURES = {
    "schema_version": 1,
    "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "matmul_tflops": 700.0}],
    "allreduce": [
        {"bytes": 1048576, "time_s": 0.001, "algbw_gbps": 50.0, "busbw_gbps": 87.5},
        {"bytes": 67108864, "time_s": 0.2, "algbw_gbps": 200.0, "busbw_gbps": 350.0},
    ],
}
BENCH = [
    {
        "device": "cuda:0",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "preset": "base",
        "status": "ok",
        "duration_s": 31.5,
        "error": None,
        "result": {"train": {"samples_per_s": 812.5, "mfu": 0.41}, "eval": {"f1": 0.91}},
    }
]


def promtool(text: str) -> subprocess.CompletedProcess:
    require_tools("promtool")
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def families(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def full_doc() -> dict:
    """A report with every kind of metric: findings, GPUs, a benchmark, node figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/report.json"
        main(
            [
                "check",
                "--from-snapshot",
                str(SNAPSHOTS / "healthy_h100_x8.json"),
                "-q",
                "--json",
                out,
            ]
        )
        with open(out) as fh:
            doc = json.load(fh)
    doc["bench"] = BENCH
    doc["node"] = NODE_FIGURES
    return doc


def all_metric_names() -> set[str]:
    names = set(families(render_prometheus(full_doc(), 1.0)))
    for path in FIXTURES:
        names |= set(families(render_prometheus({"snapshot": json.loads(path.read_text())}, 1.0)))
    return names


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_check_prometheus_passes_promtool_on_every_fixture(tmp_path, fixture):
    prom = tmp_path / "gpucheck.prom"
    code = main(["check", "--from-snapshot", str(fixture), "-q", "--prometheus", str(prom)])
    assert code in (0, 1)
    text = prom.read_text()
    r = promtool(text)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'gpucheck_verdict{verdict="' in text
    assert "gpucheck_last_run_timestamp_seconds" in text
    assert [p.name for p in tmp_path.iterdir()] == ["gpucheck.prom"]  # no temp file left


def test_probe_prometheus_on_this_machine(tmp_path):
    prom = tmp_path / "probe.prom"
    assert main(["probe", "-q", "--prometheus", str(prom)]) in (0, 1)
    text = prom.read_text()
    assert promtool(text).returncode == 0
    assert "gpucheck_node_info{hostname=" in text


def test_naming_conventions():
    text = render_prometheus(full_doc(), 1700000000.0)
    assert promtool(text).returncode == 0
    types = families(text)
    assert set(types.values()) == {"gauge"}
    assert not [n for n in types if n.endswith("_total")]  # _total is for counters only
    assert all(n.startswith("gpucheck_") for n in types)
    assert all(n.endswith("_info") for n in types if "info" in n)
    for line in text.splitlines():
        if line.startswith(("gpucheck_gpu_", "gpucheck_bench_")):
            assert 'gpu="' in line and 'uuid="' in line and 'name="' in line, line
        if line.startswith("gpucheck_") and "_info{" in line:
            assert line.endswith(" 1"), line
    assert 'gpucheck_bench_samples_per_second{device="cuda:0",gpu="0"' in text
    assert "gpucheck_bench_f1_ratio" in text and "gpucheck_bench_mfu_ratio" in text
    assert (
        'gpucheck_node_allreduce_busbw_bytes_per_second{message_bytes="67108864"} 350000000000'
        in text
    )
    assert "gpucheck_last_run_timestamp_seconds 1700000000" in text


def test_findings_by_id_and_severity(tmp_path):
    prom = tmp_path / "ecc.prom"
    main(
        [
            "check",
            "--from-snapshot",
            str(SNAPSHOTS / "ecc_errors.json"),
            "-q",
            "--prometheus",
            str(prom),
        ]
    )
    text = prom.read_text()
    assert re.search(
        r'^gpucheck_finding\{id="GC302",severity="error",gpu="0",uuid="GPU-', text, re.M
    )
    assert 'gpucheck_findings{severity="error"} 2' in text
    assert 'gpucheck_verdict{verdict="FAIL"} 1' in text
    assert re.search(r'gpucheck_gpu_ecc_uncorrected_errors\{[^}]*scope="volatile"\} [1-9]', text)


def test_label_values_are_escaped():
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    doc = full_doc()
    doc["snapshot"]["gpus"][0]["name"] = 'Weird "GPU"\\\nname'
    text = render_prometheus(doc, 1.0)
    assert 'name="Weird \\"GPU\\"\\\\\\nname"' in text
    assert promtool(text).returncode == 0


def test_a_bad_prometheus_path_is_a_usage_error(tmp_path, capsys):
    code = main(["probe", "-q", "--prometheus", str(tmp_path / "missing" / "x.prom")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_alert_rules_pass_promtool_check_rules():
    require_tools("promtool")
    r = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 rules found" in r.stdout


def _exprs(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "expr" and isinstance(v, str)] + [
            e for v in node.values() for e in _exprs(v)
        ]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_dashboard_and_rules_use_only_metrics_gpucheck_writes():
    import yaml

    known = all_metric_names()
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"] and dashboard["uid"] and dashboard["__inputs"]
    rules = yaml.safe_load(RULES.read_text())
    exprs = _exprs(dashboard) + _exprs(rules)
    assert len(exprs) >= len(dashboard["panels"]) + 3
    used = {m for e in exprs for m in re.findall(r"\bgpucheck_[a-z0-9_]+", e)}
    assert used and used <= known, used - known
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
