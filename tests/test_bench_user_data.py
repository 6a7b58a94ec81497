"""`gpucheck bench --model/--train-file/--eval-file/--f1-gate/--download` (issue 14): the flags
reach the child's command line, bad input is exit 2 before any probing, and a run on user data
reports the gate that applied."""

from __future__ import annotations

import argparse
import json

import pytest

from gpucheck import bench, cli
from gpucheck.bench import BenchResult, bench_findings, child_env, user_args
from gpucheck.node import launch as launch_mod
from gpucheck.render import text


def _conll(path, sentences):
    lines = []
    for s in sentences:
        lines += [f"{w} {t}" for w, t in zip(s.words, s.tags, strict=True)]
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    from finetune.data import generate_corpus

    train, dev = generate_corpus(48, 16, seed=3)
    return _conll(tmp_path / "train.txt", train), _conll(tmp_path / "dev.txt", dev)


def _args(argv):
    return cli.build_parser().parse_args(argv)


def test_user_args_from_the_bench_flags():
    args = _args(
        ["bench", "--model", "m", "--train-file", "t", "--eval-file", "e", "--f1-gate", "0.5"]
    )
    assert user_args(args) == [
        "--model",
        "m",
        "--train-file",
        "t",
        "--eval-file",
        "e",
        "--f1-gate",
        "0.5",
    ]
    assert user_args(_args(["check", "--train-file", "hf:conll2003", "--download"])) == [
        "--train-file",
        "hf:conll2003",
        "--download",
    ]
    assert user_args(_args(["bench"])) == []
    assert user_args(argparse.Namespace()) == []  # probe/recommend have none of them


def test_the_child_command_line_carries_them(monkeypatch):
    seen = {}

    def fake_child(cmd, timeout):
        seen["cmd"], seen["env"] = cmd, child_env(cmd)
        return 0, "", 0.1, False

    monkeypatch.setattr(bench, "_run_child", fake_child)
    extra = ["--train-file", "t.txt", "--eval-file", "e.txt", "--f1-gate", "0.5", "--download"]
    r = bench.run_bench(preset="tiny", device="cpu", timeout=5, extra_args=extra)
    assert r.command[r.command.index("--train-file") :] == tuple(extra)
    assert "HF_HUB_OFFLINE" not in seen["env"]  # --download: the child may go online
    bench.run_bench(preset="tiny", device="cpu", timeout=5, extra_args=extra[:2])
    assert seen["env"]["HF_HUB_OFFLINE"] == "1"


def test_torchrun_ranks_get_them_too(monkeypatch):
    seen = {}

    class Done:
        returncode, timed_out, stderr, error = 0, False, "", None

    def fake_run(argv, timeout, env, stdout):
        seen["argv"], seen["env"] = argv, env
        return Done()

    monkeypatch.setattr(launch_mod.proc, "run", fake_run)
    monkeypatch.setattr(launch_mod, "sweep", lambda run_id: 0)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    args = launch_mod.bench_args("/x.json", "base", ["--model", "m", "--download"])
    launch_mod.launch(launch_mod.LaunchSpec(nproc_per_node=2, args=args, timeout=5))
    assert seen["argv"][-3:] == ["--model", "m", "--download"]
    assert "HF_HUB_OFFLINE" not in seen["env"]
    launch_mod.launch(launch_mod.LaunchSpec(nproc_per_node=2, args=args[:-1], timeout=5))
    assert seen["env"]["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train-file", "/nonexistent/t.txt", "--eval-file", "E"], "--train-file"),
        (["--train-file", "T", "--eval-file", "/nonexistent/e.txt"], "--eval-file"),
        (["--train-file", "T"], "give --train-file and --eval-file together"),
        (["--f1-gate", "-0.1"], "--f1-gate"),
        (["--f1-gate", "1.5"], "--f1-gate"),
        (["--f1-gate", "abc"], "--f1-gate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, monkeypatch, capsys, argv, message):
    tf, ef = files
    argv = [str(tf) if a == "T" else str(ef) if a == "E" else a for a in argv]

    def no_probe(**kw):
        raise AssertionError("probed before the usage check")

    monkeypatch.setattr("gpucheck.probe.collect", no_probe)
    rc = cli.main(["bench", "--no-color", "--bench-device", "cpu", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("gpucheck: error:") and message in err


def test_hf_train_file_needs_no_eval_file_or_local_file():
    args = _args(["bench", "--train-file", "hf:conll2003", "--download"])
    cli._check_bench_inputs(args)  # no error: the child fetches it (validation split)


def _user_result(status, threshold, why, f1=0.25):
    doc = {
        "train": {"samples_per_s": 10.0, "loss_first": 2.0, "loss_last": 1.0},
        "eval": {"f1": f1},
        "gate": {
            "passed": status == "ok",
            "f1_threshold": threshold,
            "kind": "training-works" if threshold is None else "user-f1",
            "why": why,
            "reasons": [] if status == "ok" else ["dev F1 is below the gate"],
        },
    }
    cmd = ("python", "-m", "finetune", "--train-file", "my train.txt", "--eval-file", "d.txt")
    return BenchResult("cpu", "tiny", status, 3.0, result=doc, command=cmd)


def test_reports_say_which_gate_applied():
    ok = _user_result("ok", None, "user data: no F1 is known to expect")
    gate = text.bench_gate(ok.to_dict())
    assert "no F1 gate" in gate and "user data" in gate and "None" not in gate
    failed = _user_result("gate-failed", 0.5, "--f1-gate 0.5 asked for it")
    assert (
        text.bench_gate(failed.to_dict())
        == "dev F1 0.250 >= 0.5: failed (--f1-gate 0.5 asked for it)"
    )
    (f,) = [f for f in bench_findings([failed]) if f.id == "GC401"]
    assert "dev F1 0.2500, gate 0.5 (--f1-gate 0.5 asked for it)" in f.evidence
    assert "--train-file 'my train.txt' --eval-file d.txt" in f.fix  # the rerun reproduces it
    assert not any("gate None" in e for e in f.evidence)


def test_end_to_end_on_user_conll_files(files, tmp_path, capsys):
    tf, ef = files
    out, md = tmp_path / "out.json", tmp_path / "out.md"
    argv = ["bench", "--no-color", "--bench-device", "cpu", "--train-file", str(tf)]
    rc = cli.main([*argv, "--eval-file", str(ef), "--json", str(out), "--markdown", str(md)])
    shown = capsys.readouterr().out  # --json FILE: the console view is still printed
    assert rc == 0, shown
    (b,) = json.loads(out.read_text())["bench"]
    assert b["status"] == "ok"
    assert b["command"][-4:] == ["--train-file", str(tf), "--eval-file", str(ef)]
    doc = b["result"]
    assert doc["data"]["source"] == "conll" and doc["data"]["train_sentences"] == 48
    assert doc["gate"]["kind"] == "training-works" and doc["gate"]["f1_threshold"] is None
    for view in (shown, md.read_text()):
        assert "no F1 gate" in view and "gate None" not in view


def test_end_to_end_with_an_f1_gate_fails_like_finetune(files, tmp_path):
    tf, ef = files
    out = tmp_path / "out.json"
    argv = ["bench", "--no-color", "--bench-device", "cpu", "--json", str(out), "--quiet"]
    rc = cli.main([*argv, "--train-file", str(tf), "--eval-file", str(ef), "--f1-gate", "0.99"])
    report = json.loads(out.read_text())
    (b,) = report["bench"]
    assert rc == 1 and b["status"] == "gate-failed"
    assert b["result"] is not None and b["result"]["gate"]["f1_threshold"] == 0.99
    gc401 = [f for f in report["findings"] if f["id"] == "GC401"]
    assert gc401 and any(", gate 0.99" in e for e in gc401[0]["evidence"])
