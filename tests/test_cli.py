"""The CLI contract: exit codes, outputs, and one clear line for every bad input."""

import json
import os

import pytest
from conftest import SNAPSHOTS, healthy_gpu_snapshot, validate_report

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
    prose = [line for line in out.splitlines() if "install " not in line]
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
    good["gpus"][0]["index"] = "0"
    (tmp_path / "wrongtype.json").write_text(json.dumps(good))
    return tmp_path


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
