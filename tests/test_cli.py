"""The CLI contract: exit codes, outputs, and one clear line for every bad input."""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, SNAPSHOTS, healthy_gpu_snapshot, validate_report

from gpucheck import cli
from gpucheck.snapshot import SCHEMA_VERSION, Gpu


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_healthy_snapshot_passes_and_json_round_trips(capsys, write_snapshot):
    snap = healthy_gpu_snapshot()
    code, out, err = run(capsys, "--from-snapshot", write_snapshot(snap), "--json")
    assert code == 0, err
    doc = json.loads(out)
    validate_report(doc)
    assert doc["verdict"] in ("PASS", "WARN") and doc["exit_code"] == 0
    assert doc["snapshot"] == snap.to_dict()
    assert doc["bench"] is None and "another run" in doc["notes"][0]


def test_error_finding_exits_1(capsys, write_snapshot):
    snap = healthy_gpu_snapshot()
    lost = snap.gpus[0].__class__(index=0, error="GpuIsLost")
    broken = snap.__class__(**{**snap.__dict__, "gpus": (lost, snap.gpus[1])})
    code, out, _ = run(capsys, "probe", "--from-snapshot", write_snapshot(broken), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["verdict"] == "FAIL" and doc["summary"]["error"] >= 1


def test_strict_turns_warnings_into_exit_1(capsys, write_snapshot):
    snap = healthy_gpu_snapshot(1)
    hot = Gpu(**{**snap.gpus[0].__dict__, "clock_event_reasons": ("hw_thermal_slowdown",)})
    path = write_snapshot(snap.__class__(**{**snap.__dict__, "gpus": (hot,)}))
    code, out, _ = run(capsys, "probe", "--from-snapshot", path, "--json")
    assert json.loads(out)["summary"]["warn"] >= 1
    assert code == 0
    code, _, _ = run(capsys, "probe", "--from-snapshot", path, "--json", "--strict")
    assert code == 1


def test_require_gpu(capsys):
    path = str(SNAPSHOTS / "this_machine.json")
    code, out, _ = run(capsys, "probe", "--from-snapshot", path, "--json")
    assert code == 0 and "GC901" not in out
    code, out, _ = run(capsys, "probe", "--from-snapshot", path, "--json", "--require-gpu")
    assert code == 1
    assert "GC901" in [f["id"] for f in json.loads(out)["findings"]]


@pytest.mark.parametrize(
    "fixture", sorted(str(p.relative_to(SNAPSHOTS)) for p in SNAPSHOTS.rglob("*.json"))
)
def test_every_fixture_renders_everywhere(tmp_path, capsys, fixture):
    path = str(SNAPSHOTS / fixture)
    out_json, out_md, out_xml = (str(tmp_path / n) for n in ("r.json", "r.md", "r.xml"))
    code, out, err = run(
        capsys,
        "--from-snapshot",
        path,
        "--json",
        out_json,
        "--markdown",
        out_md,
        "--junit",
        out_xml,
        "--no-color",
    )
    assert code in (0, 1), err
    doc = json.loads(open(out_json).read())
    validate_report(doc)
    assert code == doc["exit_code"]
    assert doc["verdict"] in out  # the terminal view starts with the verdict
    # a command is never wrapped (pasting half of one installs the wrong build): only prose counts
    prose = [
        line
        for line in out.splitlines()
        if "install " not in line and not line.strip().startswith("`")  # a command on its own
    ]
    assert max(len(line) for line in prose) <= 100
    assert "\x1b[" not in out
    assert open(out_md).read().startswith("## gpucheck")


def test_dump_and_replay_snapshot(tmp_path, capsys, write_snapshot):
    dumped = tmp_path / "again.json"
    src = write_snapshot(healthy_gpu_snapshot())
    code, _, _ = run(capsys, "probe", "--from-snapshot", src, "--dump-snapshot", str(dumped), "-q")
    assert code == 0
    assert json.loads(dumped.read_text()) == json.loads(open(src).read())


BAD_INPUTS = [
    (["--no-such-flag"], "unrecognized arguments"),
    (["--torch-timeout", "soon"], "not a number of seconds"),
    (["--torch-timeout", "-1"], "seconds must be > 0"),
    (["--json", "--markdown"], "cannot both go to stdout"),
    (["--json", "{tmp}/nope/r.json"], "does not exist"),
    (["--json", "{tmp}/same", "--junit", "{tmp}/same"], "same file"),
    (["--from-snapshot", "{tmp}/missing.json"], "cannot read snapshot"),
    (["--from-snapshot", "{tmp}/truncated.json"], "not valid JSON"),
    (["--from-snapshot", "{tmp}/future.json"], "newer than this gpucheck"),
    (["--from-snapshot", "{tmp}/binary.json"], "not UTF-8"),
    (["--from-snapshot", "{tmp}/wrongtype.json"], "expected int"),
    (
        ["--compat", "{tmp}/truncated.json", "--from-snapshot", "{tmp}/good.json"],
        "compatibility table",
    ),
    (["--compat", "{tmp}/binary.json"], "not UTF-8"),
    (["--json", ""], "--json: the file name is empty"),
    (["--junit", ""], "--junit: the file name is empty"),
    (["--from-snapshot", ""], "file name is empty"),
    (["--from-snapshot", "{tmp}/cc_nine.json"], "expected a compute capability X.Y, got 'nine'"),
    (["--from-snapshot", "{tmp}/huge_int.json"], "a number too long"),
    (["--from-snapshot", "{tmp}/long_int.json"], "integer out of range"),
    (["--from-snapshot", "{tmp}/nul.json"], "is a binary file"),
    # every output is checked before any work: nothing is written, not even ok.json
    (["--json", "{tmp}/ok.json", "--junit", "{tmp}"], "it is a folder"),
    (["--json", "{tmp}/ok.json", "--dump-snapshot", "{tmp}/sock"], "it is a socket"),
]


@pytest.fixture
def bad_files(tmp_path):
    good = healthy_gpu_snapshot().to_dict()
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "truncated.json").write_text(json.dumps(good)[:200])
    (tmp_path / "future.json").write_text(
        json.dumps({**good, "schema_version": SCHEMA_VERSION + 1})
    )
    (tmp_path / "binary.json").write_bytes(bytes(range(256)) * 4)
    text = json.dumps(good)
    (tmp_path / "cc_nine.json").write_text(text.replace('"9.0"', '"nine"', 1))
    (tmp_path / "huge_int.json").write_text(text.replace('"index": 0', '"index": ' + "7" * 5000))
    (tmp_path / "long_int.json").write_text(text.replace('"index": 0', '"index": ' + "7" * 400))
    (tmp_path / "nul.json").write_text(text[:50] + "\x00" + text[50:])
    good["gpus"][0]["index"] = "0"
    (tmp_path / "wrongtype.json").write_text(json.dumps(good))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    yield tmp_path
    sock.close()


@pytest.mark.parametrize("argv, message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(capsys, bad_files, argv, message):
    argv = [a.replace("{tmp}", str(bad_files)) for a in argv]
    before = sorted(os.listdir(bad_files))
    code, out, err = run(capsys, "probe", *argv)
    assert code == 2
    assert err.startswith("gpucheck: error: ") and message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and out == ""
    assert sorted(os.listdir(bad_files)) == before  # no output file, not even a half one


@pytest.mark.parametrize("device", ["cuda:abc", "garbage", "cuda:", "cuda:-1", "cpu:0"])
def test_bad_bench_device_is_one_line_and_exit_2(capsys, device):
    code, out, err = run(capsys, "check", "--bench-device", device)
    assert code == 2 and "--bench-device" in err and len(err.splitlines()) == 1 and out == ""


def test_outputs_are_checked_before_probing(capsys, tmp_path, monkeypatch):
    from gpucheck import probe

    def must_not_probe(**_kw):
        raise AssertionError("probed before the outputs were checked")

    monkeypatch.setattr(probe, "collect", must_not_probe)
    code, _, err = run(
        capsys, "probe", "--json", str(tmp_path / "ok.json"), "--junit", str(tmp_path)
    )
    assert code == 2 and "it is a folder" in err
    assert os.listdir(tmp_path) == []


def test_require_gpu_without_a_gpu_skips_the_cpu_benchmark(capsys, tmp_path, monkeypatch):
    from gpucheck import bench, probe

    no_gpu = healthy_gpu_snapshot(0)
    monkeypatch.setattr(probe, "collect", lambda **_kw: no_gpu)
    ran = []
    monkeypatch.setattr(bench, "run_benches", lambda *a, **k: ran.append(k) or [])
    out = tmp_path / "r.json"
    code, _, _ = run(capsys, "check", "--require-gpu", "--json", str(out), "-q")
    doc = json.loads(out.read_text())
    assert ran == [] and doc["bench"] is None
    assert any("--require-gpu" in n for n in doc["notes"])
    assert code == 1 and "GC901" in {f["id"] for f in doc["findings"]}


def _cli(*argv, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gpucheck", *argv], cwd=ROOT, capture_output=False, **kw
    )


def test_full_stdout_is_one_line_and_exit_2(tmp_path):
    snap = str(SNAPSHOTS / "healthy_h100_x8.json")
    for argv in (["probe", "--json"], ["probe"], ["recommend"]):
        with open("/dev/full", "w") as full:
            done = _cli(
                *argv, "--from-snapshot", snap, stdout=full, stderr=subprocess.PIPE, timeout=60
            )
        err = done.stderr.decode()
        assert done.returncode == 2, (argv, err)
        assert err == "gpucheck: error: cannot write the output: No space left on device\n"


def test_full_disk_for_a_file_is_one_line_and_exit_2(capsys):
    snap = str(SNAPSHOTS / "healthy_h100_x8.json")
    code, _, err = run(capsys, "probe", "--from-snapshot", snap, "--json", "/dev/full")
    assert code == 2 and err == "gpucheck: error: cannot write /dev/full: No space left on device\n"


@pytest.mark.parametrize("argv", [["probe", "--json"], ["probe"], ["recommend"]])
def test_broken_pipe_exits_0_quietly(argv):
    """`gpucheck recommend | head -1`: the reader left; that is not an error."""
    snap = str(SNAPSHOTS / "healthy_h100_x8.json")
    child = subprocess.Popen(
        [sys.executable, "-m", "gpucheck", *argv, "--from-snapshot", snap],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()  # the reader is gone before the first byte
    err = child.stderr.read()
    assert child.wait(timeout=60) == 0, err
    assert err == b""


def test_bad_choice_for_check(capsys):
    code, _, err = run(capsys, "check", "--bench-preset", "huge")
    assert code == 2 and "invalid choice" in err and len(err.splitlines()) == 1


def test_read_only_output_folder_is_exit_2(capsys, tmp_path, write_snapshot, monkeypatch):
    # As root the folder's mode bits do not stop a write, so ask the same question os.access asks.
    src = write_snapshot(healthy_gpu_snapshot())
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: False if str(p) == str(tmp_path / "ro") else real_access(p, m)
    )
    (tmp_path / "ro").mkdir()
    code, _, err = run(
        capsys, "probe", "--from-snapshot", src, "--json", str(tmp_path / "ro" / "r.json")
    )
    assert code == 2 and "not writable" in err
    assert os.listdir(tmp_path / "ro") == []


def test_internal_error_is_exit_3_with_how_to_report(capsys, write_snapshot, monkeypatch):
    import gpucheck.diagnose

    def broken(*_a, **_k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(gpucheck.diagnose, "diagnose", broken)
    code, _, err = run(capsys, "probe", "--from-snapshot", write_snapshot(healthy_gpu_snapshot()))
    assert code == 3
    assert "internal error: ZeroDivisionError: a bug" in err and "report" in err
    assert "Traceback" not in err


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert "gpucheck" in capsys.readouterr().out
