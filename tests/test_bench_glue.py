"""gpucheck.bench: the child process, its timeout, the OOM retry and the GC4xx findings."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
import time

import pytest

from gpucheck import bench
from gpucheck.bench import (
    BenchResult,
    bench_devices,
    bench_findings,
    choose_preset,
    run_bench,
    run_benches,
)
from gpucheck.findings import Severity
from gpucheck.snapshot import Snapshot, System, TorchDevice, TorchRuntime


def _snapshot(devices=(), status="ok", available=True):
    rt = TorchRuntime(
        status=status,
        cuda_available=available,
        device_count=len(devices),
        devices=tuple(TorchDevice(i, name) for i, name in enumerate(devices)),
    )
    return Snapshot(system=System(os="linux", arch="x86_64"), torch_runtime=rt)


def _result(status="ok", device="cuda:0", sps=1000.0, name="NVIDIA H200", **kw):
    # by default the NVML index equals the CUDA one (a machine where the orders agree)
    kw.setdefault("gpu", int(device.partition(":")[2] or 0) if device.startswith("cuda") else None)
    doc = {
        "train": {"samples_per_s": sps, "loss_first": 2.0, "loss_last": 0.1},
        "eval": {"f1": 0.5},
        "gate": {
            "passed": status == "ok",
            "f1_threshold": 0.85,
            "reasons": ["dev F1 0.5000 is below the gate 0.85"],
        },
        "dtype": "bf16",
    }
    return BenchResult(
        device=device,
        preset="base",
        status=status,
        duration_s=12.0,
        gpu_name=name,
        result=doc,
        **kw,
    )


# --- choosing what to run -------------------------------------------------------------------


def test_preset_and_devices_without_gpu():
    for snap in (
        _snapshot(),
        _snapshot(available=False),
        _snapshot(status="import-error"),
        Snapshot(system=System(os="linux", arch="x86_64")),
    ):
        assert choose_preset(snap) == "tiny"
        assert bench_devices(snap) == ["cpu"]


def test_preset_and_devices_with_gpus():
    snap = _snapshot(("NVIDIA H200", "NVIDIA H200"))
    assert choose_preset(snap) == "base"
    assert bench_devices(snap) == ["cuda:0", "cuda:1"]


def test_broken_gpu_is_not_benchmarked():
    rt = TorchRuntime(
        status="ok",
        cuda_available=True,
        device_count=2,
        devices=(TorchDevice(0, "A", matmul_ok=False), TorchDevice(1, "B")),
    )
    snap = Snapshot(system=System(os="linux", arch="x86_64"), torch_runtime=rt)
    assert bench_devices(snap) == ["cuda:1"]


# --- findings from crafted results ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "fid", "severity"),
    [
        ("gate-failed", "GC401", Severity.ERROR),
        ("nan-loss", "GC402", Severity.ERROR),
        ("oom", "GC403", Severity.ERROR),
        ("timeout", "GC404", Severity.ERROR),
        ("crash", "GC405", Severity.ERROR),
        ("skipped", "GC407", Severity.INFO),
    ],
)
def test_each_failure_is_a_finding_with_a_fix(status, fid, severity):
    (f,) = bench_findings([_result(status, error="boom", returncode=3)])
    assert f.id == fid and f.severity is severity
    assert f.fix and f.evidence and f.gpu == 0
    assert f.to_dict()["id"] == fid


def test_input_the_child_refused_is_named_once_with_the_download_hint():
    line = "finetune: error: hf:conll2003: not in the local cache (--download fetches it)"
    (f,) = bench_findings([_result("crash", error=line, returncode=2, stderr_tail=line + "\n")])
    assert f.id == "GC405" and "refused its input" in f.title
    assert "--download" in f.fix and "FINETUNE_DEBUG" not in f.fix
    assert list(f.evidence).count(line) == 1
    (g,) = bench_findings([_result("crash", error="Segmentation fault", returncode=-11)])
    assert "crashed" in g.title and "FINETUNE_DEBUG=1" in g.fix


def test_a_failed_run_on_user_data_names_its_gate_not_none():
    r = _result("gate-failed")
    r.result["gate"] = {
        "passed": False,
        "f1_threshold": None,
        "kind": "loss-falls",
        "why": "user data: no calibrated F1 gate",
        "reasons": ["the loss did not fall"],
    }
    (f,) = bench_findings([r])
    assert "dev F1 0.5000, no F1 gate (user data: no calibrated F1 gate)" in f.evidence
    assert not any("gate None" in line for line in f.evidence)
    (g,) = bench_findings([_result("gate-failed")])
    assert "dev F1 0.5000, gate 0.85" in g.evidence


def test_ok_gives_no_finding():
    assert bench_findings([_result("ok"), _result("ok", device="cpu", name=None)]) == []


def test_slow_gpu_among_peers():
    results = [_result(device=f"cuda:{i}", sps=s) for i, s in enumerate((1000, 980, 1010, 600))]
    (f,) = bench_findings(results)
    assert f.id == "GC406" and f.severity is Severity.WARN and f.gpu == 3
    assert "0.61x" in f.title


def test_no_slow_finding_without_peers_of_the_same_model():
    assert bench_findings([_result(sps=1000)]) == []
    mixed = [
        _result(device="cuda:0", sps=1000, name="NVIDIA H200"),
        _result(device="cuda:1", sps=300, name="NVIDIA L4"),
    ]
    assert bench_findings(mixed) == []
    close = [_result(device="cuda:0", sps=1000), _result(device="cuda:1", sps=800)]
    assert bench_findings(close) == []


def test_to_dict_shape():
    d = _result("ok").to_dict()
    assert set(d) >= {"device", "gpu_name", "preset", "status", "duration_s", "error", "result"}
    json.dumps(d)


# --- the child process, with a stub interpreter ---------------------------------------------


@pytest.fixture
def stub(tmp_path):
    """An executable standing in for python: it writes the JSON a scenario asks for."""
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "fakepython"
    script.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys, time
        argv = sys.argv[1:]
        with open({str(log)!r}, "a") as fh:
            fh.write(json.dumps(argv) + "\\n")
        out = argv[argv.index("--json") + 1]
        dev = argv[argv.index("--device") + 1]
        batch = int(argv[argv.index("--batch-size") + 1]) if "--batch-size" in argv else 32
        scenario = os.environ["STUB_SCENARIO"]
        if scenario == "hang":
            time.sleep(60)
        if scenario == "die":
            print("Segmentation fault", file=sys.stderr)
            sys.exit(139)
        status = "ok"
        if scenario == "oom" and batch > 16:
            status = "oom"
        if scenario == "skipped":
            status = "skipped"
        sps = 500.0 if dev == "cuda:1" else 1000.0
        doc = {{"schema_version": 1, "status": status, "error": None, "gpu_name": "Stub GPU",
               "config": {{"batch_size": batch}}, "train": {{"samples_per_s": sps}},
               "eval": {{"f1": 0.9}}, "gate": {{"passed": status == "ok"}}}}
        if status != "ok":
            doc["train"] = None
            doc["error"] = status
        with open(out, "w") as fh:
            json.dump(doc, fh)
        sys.exit(0 if status == "ok" else 1)
        """)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def _calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_oom_is_retried_with_half_the_batch(stub, monkeypatch):
    script, log = stub
    monkeypatch.setenv("STUB_SCENARIO", "oom")
    r = run_bench(preset="base", device="cuda:0", timeout=30, python=str(script))
    assert r.status == "ok" and r.retried_with_batch == 16
    calls = _calls(log)
    assert len(calls) == 2 and calls[1][-2:] == ["--batch-size", "16"]
    assert calls[0][:6] == ["-m", "finetune", "--preset", "base", "--device", "cuda:0"]


def test_oom_twice_is_a_finding(stub, monkeypatch):
    script, log = stub
    monkeypatch.setenv("STUB_SCENARIO", "oom")
    r = run_bench(
        preset="base",
        device="cuda:0",
        timeout=30,
        python=str(script),
        extra_args=["--batch-size", "64"],
    )
    # 64 -> 32: the stub still runs out of memory at 32
    assert r.status == "oom" and r.retried_with_batch == 32
    assert [f.id for f in bench_findings([r])] == ["GC403"]


def test_crash_without_json(stub, monkeypatch):
    script, _ = stub
    monkeypatch.setenv("STUB_SCENARIO", "die")
    r = run_bench(preset="tiny", device="cpu", timeout=30, python=str(script))
    assert r.status == "crash" and r.returncode == 139
    assert "Segmentation fault" in r.error


def test_skipped(stub, monkeypatch):
    script, _ = stub
    monkeypatch.setenv("STUB_SCENARIO", "skipped")
    r = run_bench(preset="tiny", device="cpu", timeout=30, python=str(script))
    assert r.status == "skipped"


def test_timeout_kills_the_child(stub, monkeypatch):
    script, log = stub
    monkeypatch.setenv("STUB_SCENARIO", "hang")
    t0 = time.monotonic()
    r = run_bench(preset="tiny", device="cpu", timeout=1.0, python=str(script))
    assert time.monotonic() - t0 < 15
    assert r.status == "timeout" and "killed" in r.error
    assert [f.id for f in bench_findings([r])] == ["GC404"]


def test_every_gpu_in_turn_and_the_slow_one(stub, monkeypatch):
    script, log = stub
    monkeypatch.setenv("STUB_SCENARIO", "ok")
    snap = _snapshot(("NVIDIA H200", "NVIDIA H200"))
    results = run_benches(snap, timeout=30, python=str(script))
    assert [r.device for r in results] == ["cuda:0", "cuda:1"]
    assert all(r.preset == "base" and r.gpu_name == "NVIDIA H200" for r in results)
    assert [f.id for f in bench_findings(results)] == ["GC406"]


def test_missing_interpreter_is_a_crash(tmp_path):
    r = run_bench(preset="tiny", device="cpu", timeout=5, python=str(tmp_path / "no-python"))
    assert r.status == "crash" and "cannot start" in r.error


def test_bad_arguments_are_a_crash_with_the_message():
    r = run_bench(preset="tiny", device="cpu", timeout=60, extra_args=["--batch-size", "0"])
    assert r.status == "crash" and "must be at least 1" in r.error


# --- the real thing ---------------------------------------------------------------------------


def test_real_timeout_path_is_quick():
    t0 = time.monotonic()
    r = run_bench(preset="tiny", device="cpu", timeout=0.5)
    assert r.status == "timeout" and time.monotonic() - t0 < 10


@pytest.mark.slow
def test_real_tiny_run_on_cpu():
    # the real child end to end (the gate itself is tested in test_finetune_train.py)
    r = run_bench(preset="tiny", device="cpu", timeout=300, extra_args=["--max-steps", "40"])
    assert r.status in ("ok", "gate-failed"), (r.error, r.stderr_tail)
    assert r.result["schema_version"] == 1 and r.result["config"]["preset"] == "tiny"
    assert r.result["train"]["steps"] == 40 and r.result["train"]["samples_per_s"] > 0
    assert r.result["device"] == "cpu" and r.gpu_name is None
    assert [f.id for f in bench_findings([r])] == ([] if r.status == "ok" else ["GC401"])
    assert not os.path.exists(r.command[r.command.index("--json") + 1])  # temp file cleaned up


def test_bench_module_never_imports_torch():
    import subprocess

    code = (
        "import sys, gpucheck.bench; "
        "sys.exit(1 if {'torch', 'transformers'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    assert bench.STATUSES[0] == "ok"


@pytest.mark.slow
def test_real_nan_loss_is_reported():
    # An absurd learning rate blows the weights up: the child says nan-loss, gpucheck GC402.
    r = run_bench(
        preset="tiny", device="cpu", timeout=120, extra_args=["--max-steps", "12", "--lr", "1e30"]
    )
    assert r.status == "nan-loss", r
    assert [f.id for f in bench_findings([r])] == ["GC402"]


def test_gpu_gone_between_probe_and_bench():
    # The probe saw two GPUs; by the time the benchmark runs, CUDA is gone (here: a CPU torch).
    results = run_benches(_snapshot(("NVIDIA H200", "NVIDIA H200")), preset="tiny", timeout=60)
    assert [r.device for r in results] == ["cuda:0", "cuda:1"]
    assert all(r.status == "crash" and "CUDA is not available" in r.error for r in results)
    findings = bench_findings(results)
    # no NVML GPU to join cuda:N to: the NVML index is unknown, not guessed
    assert [(f.id, f.gpu) for f in findings] == [("GC405", None), ("GC405", None)]


# --- issue 9: the NVML index, the whole-run deadline, NVML sampled under load ----------------


def test_findings_carry_the_nvml_index_not_the_cuda_one():
    results = [
        _result(device=f"cuda:{i}", sps=s, gpu=3 - i) for i, s in enumerate((1000, 990, 600))
    ]
    (f,) = bench_findings(results)
    assert f.id == "GC406" and f.gpu == 1 and "-i 1" in f.fix  # cuda:2 is nvidia-smi's GPU 1


def test_run_benches_joins_cuda_devices_to_nvml_on_uuid(stub, monkeypatch):
    from dataclasses import replace

    from factories import MODELS, gpus

    script, _ = stub
    monkeypatch.setenv("STUB_SCENARIO", "ok")
    nv = gpus("h100", 2, ("18", "2A"))
    snap = _snapshot((MODELS["h100"].name,) * 2)
    rt = snap.torch_runtime
    devs = (replace(rt.devices[0], uuid=nv[1].uuid), replace(rt.devices[1], uuid=nv[0].uuid))
    snap = replace(snap, gpus=nv, torch_runtime=replace(rt, devices=devs))
    results = run_benches(snap, timeout=30, python=str(script))
    assert [(r.device, r.gpu) for r in results] == [("cuda:0", 1), ("cuda:1", 0)]


def test_whole_run_deadline_bounds_the_sum_over_gpus(stub, monkeypatch):
    # Before: --timeout was computed once and given to each GPU in turn (3 x 30 s here).
    script, log = stub
    monkeypatch.setenv("STUB_SCENARIO", "hang")
    monkeypatch.setattr(bench, "REPORT_RESERVE_S", 0.5)
    monkeypatch.setattr(bench, "MIN_RUN_S", 1.0)
    snap = _snapshot(("NVIDIA H200",) * 3)
    t0 = time.monotonic()
    results = run_benches(snap, timeout=30, python=str(script), deadline=t0 + 3.0)
    assert time.monotonic() - t0 < 3.0 + 2.0
    assert [r.status for r in results] == ["timeout"] * 3
    assert [r.not_run for r in results] == [False, True, True]
    assert "whole-run --timeout" in results[0].error
    assert len(_calls(log)) == 1  # the later GPUs were never started
    ids = [(f.id, f.severity) for f in bench_findings(results)]
    assert ids == [("GC404", Severity.ERROR), ("GC404", Severity.WARN), ("GC404", Severity.WARN)]
    assert all(r.to_dict()["not_run"] in (True, False) for r in results)


def test_timeout_advice_does_not_suggest_the_preset_that_just_ran():
    tiny = BenchResult(device="cpu", preset="tiny", status="timeout", duration_s=60.0)
    (f,) = bench_findings([tiny])
    assert "--bench-preset tiny`)" not in f.fix.replace("already runs", "")
    assert "--max-steps" in f.fix
    (g,) = bench_findings([_result("timeout")])
    assert "--bench-preset tiny" in g.fix


def _samples(gpu, gen, width, util, n=5):
    from gpucheck.probe.sampler import Sample

    return tuple(
        Sample(t=float(i), gpu=gpu, utilization_percent=util, pcie_gen_current=gen,
               pcie_gen_max=4, pcie_width_current=width, pcie_width_max=16)
        for i in range(n)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("gen", "width", "util", "expect"),
    [
        (4, 16, 97, Severity.OK),  # full link under load
        (4, 8, 97, Severity.WARN),  # x8 of x16 under load: what the idle snapshot cannot see
        (1, 16, 97, Severity.WARN),
        (1, 8, 3, None),  # idle samples only: not judged here
    ],
)
def test_pcie_judged_on_samples_taken_under_load(gen, width, util, expect):
    r = replace_result(_result("ok", gpu=2), samples=_samples(2, gen, width, util))
    got = [f for f in bench_findings([r]) if f.id == "GC308"]
    assert [f.severity for f in got] == ([expect] if expect else [])
    assert all(f.gpu == 2 for f in got)
    assert r.to_dict()["samples"][0]["pcie_width_current"] == width


def replace_result(r, **kw):
    from dataclasses import replace

    return replace(r, **kw)


def test_sampler_reads_nvml_while_running_and_stops_on_time(monkeypatch):
    from fakes.fake_pynvml import FakeGpu, FakeNvml

    from gpucheck.probe.sampler import NvmlSampler

    FakeNvml([FakeGpu(utilization=98, pcie_width=8)]).install(monkeypatch)
    sampler = NvmlSampler([0], interval=0.02).start()
    time.sleep(0.2)
    samples = sampler.stop()
    assert len(samples) >= 3 and sampler.error is None
    assert {(s.gpu, s.utilization_percent, s.pcie_width_current) for s in samples} == {(0, 98, 8)}

    fake = FakeNvml([FakeGpu(fails={"nvmlDeviceGetPowerUsage": "hang"})]).install(monkeypatch)
    sampler = NvmlSampler([0], interval=0.02, timeout=0.3).start()
    time.sleep(0.1)
    t0 = time.monotonic()
    sampler.stop()
    fake.release()
    assert time.monotonic() - t0 < 1.0 and "did not stop" in sampler.error


def test_the_link_judged_under_load_replaces_the_idle_note_for_that_gpu():
    from gpucheck.findings import Finding

    idle = [
        Finding(
            "GC308", Severity.INFO, "PCIe link is below its maximum while idle", ("x",), "y", 2
        ),
        Finding(
            "GC308", Severity.INFO, "PCIe link is below its maximum while idle", ("x",), "y", 5
        ),
        Finding("GC310", Severity.INFO, "Persistence mode is off", ("x",), "y", 2),
    ]
    loaded = bench_findings([replace_result(_result("ok", gpu=2), samples=_samples(2, 4, 8, 97))])
    merged = bench.merge(idle, loaded)
    got = sorted((f.id, f.severity.value, f.gpu) for f in merged)
    assert got == [("GC308", "info", 5), ("GC308", "warn", 2), ("GC310", "info", 2)]


def test_cli_timeout_bounds_the_benchmark(monkeypatch, tmp_path, capsys):
    # End to end through `gpucheck bench --timeout`: a run that would take its whole
    # --bench-timeout gets what is left of --timeout, and the report is written before it ends;
    # with 2+ GPUs the one torchrun run gets that bound too.
    from gpucheck import cli, probe
    from gpucheck.node import bench_glue

    monkeypatch.setattr(bench, "REPORT_RESERVE_S", 0.5)
    monkeypatch.setattr(bench, "MIN_RUN_S", 1.0)
    limits = []

    def hung_run(**kw):
        limits.append(kw["timeout"])
        time.sleep(min(kw["timeout"], 30))
        return BenchResult(kw["device"], kw["preset"], "timeout", kw["timeout"], gpu=kw.get("gpu"))

    monkeypatch.setattr(bench, "run_bench", hung_run)
    monkeypatch.setattr(
        bench_glue,
        "run_distributed_bench",
        lambda snap, n, launch, **kw: hung_run(device="cuda", **kw),
    )
    for gpus in (1, 3):
        snap = _snapshot(("NVIDIA H200",) * gpus)
        monkeypatch.setattr(probe, "collect", lambda snap=snap, **_kw: snap)
        out = tmp_path / f"r{gpus}.json"
        t0 = time.monotonic()
        argv = ["bench", "--timeout", "4", "--bench-timeout", "600", "--json", str(out), "-q"]
        code = cli.main(argv)
        capsys.readouterr()
        assert time.monotonic() - t0 < 4.0 + 1.5
        doc = json.loads(out.read_text())
        assert code == 1 and [b["status"] for b in doc["bench"]] == ["timeout"]
        assert limits[-1] < 4.0


def test_a_multi_gpu_run_is_judged_per_gpu_from_its_samples():
    r = BenchResult(
        "cuda", "base", "ok", 60.0, samples=_samples(0, 4, 16, 95) + _samples(3, 4, 8, 95)
    )
    got = sorted((f.gpu, f.severity.value) for f in bench.pcie_under_load([r]))
    assert got == [(0, "ok"), (3, "warn")]
