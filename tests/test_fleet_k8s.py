"""docs/k8s/: the Job and the DaemonSet parse, use the NVIDIA device plugin's resource, and the
exact gpucheck command line each contains runs and writes JSON and a promtool-clean file.

Substitutions, because this machine has no GPU: `--from-snapshot <a recorded H100 node>` is
added (and `--no-bench`, which --from-snapshot implies anyway), and the hostPath folder
/textfile is replaced by a temp folder. Everything else is the manifest's own command line.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import subprocess

import pytest
import yaml
from conftest import ROOT, SNAPSHOTS, validate_report
from slurm_cluster import require_tools

from gpucheck.cli import main

K8S = ROOT / "docs" / "k8s"
TEXTFILE = "/var/lib/node_exporter/textfile_collector"


def manifest(name: str) -> dict:
    (doc,) = list(yaml.safe_load_all((K8S / name).read_text()))
    return doc


def gpucheck_argv(container: dict) -> list[str]:
    """The gpucheck command line of a container: its command, or the gpucheck line of its
    shell script."""
    cmd = container["command"]
    if cmd[0] == "gpucheck":
        return list(cmd)
    assert cmd[:2] == ["/bin/sh", "-c"]
    (line,) = [x.strip() for x in cmd[2].splitlines() if x.strip().startswith("gpucheck ")]
    return shlex.split(line)


def run_substituted(argv: list[str], tmp_path) -> tuple[int, str, str]:
    assert argv[0] == "gpucheck"
    args = [a.replace("/textfile", str(tmp_path)) for a in argv[1:]]
    args += ["--from-snapshot", str(SNAPSHOTS / "healthy_h100_x8.json")]
    if "--no-bench" not in args:
        args.append("--no-bench")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue(), (tmp_path / "gpucheck.prom").read_text()


@pytest.mark.parametrize("name", ["gpucheck-job.yaml", "gpucheck-daemonset.yaml"])
def test_manifest_command_runs_and_writes_json_and_metrics(name, tmp_path):
    doc = manifest(name)
    spec = doc["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    argv = gpucheck_argv(container)
    assert "--json" in argv and "--prometheus" in argv
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["textfile"]["hostPath"]["path"] == TEXTFILE
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert argv[argv.index("--prometheus") + 1].startswith(mounts["textfile"] + "/")
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])

    code, stdout, prom = run_substituted(argv, tmp_path)
    assert code == 0
    validate_report(json.loads(stdout))  # the pod's log is the JSON report
    require_tools("promtool")
    r = subprocess.run(
        ["promtool", "check", "metrics"], input=prom, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_job_requests_gpus_from_the_nvidia_device_plugin():
    doc = manifest("gpucheck-job.yaml")
    assert doc["kind"] == "Job" and doc["apiVersion"] == "batch/v1"
    spec = doc["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert "--require-gpu" in container["command"]


def test_the_daemonset_runs_on_gpu_nodes_without_holding_gpus():
    doc = manifest("gpucheck-daemonset.yaml")
    assert doc["kind"] == "DaemonSet" and doc["apiVersion"] == "apps/v1"
    spec = doc["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = spec["containers"]
    assert "nvidia.com/gpu" not in str(container.get("resources"))
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"} in container["env"]
    assert doc["spec"]["selector"]["matchLabels"] == doc["spec"]["template"]["metadata"]["labels"]
