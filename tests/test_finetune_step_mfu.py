"""`python -m finetune.step_mfu` times a bare training step per shape (the GPU figures in
docs/benchmarks.md); here it runs on CPU at toy size, and rejects bad shapes before any work."""

from __future__ import annotations

import json

import pytest

from finetune import step_mfu


def test_rows_per_shape_with_consistent_rates(tmp_path):
    out = tmp_path / "mfu.json"
    argv = ["--device", "cpu", "--dtype", "fp32", "--hidden", "32", "--layers", "1"]
    argv += ["--vocab", "100", "--shapes", "2x8,4x16", "--steps", "2", "--warmup", "1"]
    assert (
        step_mfu.main([*argv, "--compile", "no", "--profile-shape", "2x8", "--json", str(out)]) == 0
    )
    doc = json.loads(out.read_text())
    assert [(r["batch"], r["seq"]) for r in doc["rows"]] == [(2, 8), (4, 16)]
    for r in doc["rows"]:
        assert r["samples_per_s"] == pytest.approx(r["batch"] * 1000 / r["step_ms"], rel=0.01)
        assert r["tokens_per_s"] == pytest.approx(r["samples_per_s"] * r["seq"], rel=0.01)
        assert r["mfu"] is None  # no peak on CPU
    assert doc["top_kernels"] and sum(k["share"] for k in doc["top_kernels"]) <= 1.0001


@pytest.mark.parametrize("flag", ["--shapes", "--compile-shapes"])
def test_bad_shape_is_refused_before_work(flag):
    with pytest.raises(SystemExit, match="expected BxS"):
        step_mfu.main(["--device", "cpu", flag, "32x"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--steps", "0"], "--steps"), (["--device", "gpu"], "--device 'gpu'")],
)
def test_bad_numbers_and_devices_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        step_mfu.main(["--device", "cpu", *argv])
    assert message in (str(exc.value) + capsys.readouterr().err)
