"""The command lines in docs/ci.md are real: run each one, as written, on recorded snapshots."""

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT, SNAPSHOTS, validate_report

DOC = (ROOT / "docs" / "ci.md").read_text()
# Every line of a code block that runs gpucheck, with an optional venv prefix or `srun bash -c '`.
LINES = sorted(
    {
        m.group(0).strip()
        for m in re.finditer(r"(?m)^.*\bgpucheck --[^\n]*$", DOC)
        if not m.group(0).lstrip().startswith("#")
    }
)


def shell_line(line: str) -> str:
    line = re.sub(r"^\s*(- |run: )*", "", line)
    return line.replace(".venv/bin/gpucheck", "gpucheck")


def test_the_doc_has_the_three_examples():
    assert len(LINES) >= 3, LINES
    assert all("--require-gpu" in line and "--timeout 900" in line for line in LINES)


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize(
    "snapshot, expected", [("healthy_h100_x8.json", 0), ("container_no_gpus.json", 1)]
)
def test_ci_command_lines_run(tmp_path, line, snapshot, expected):
    fixture = SNAPSHOTS / snapshot
    # `gpucheck` as the docs call it, replaying a recorded machine (so the bench is not run).
    script = (
        f'gpucheck() {{ "{sys.executable}" -m gpucheck "$@" --from-snapshot "{fixture}"; }}\nexport -f gpucheck\n'
        'srun() { "$@"; }\nmkdir -p reports\n' + shell_line(line) + "\n"
    )
    proc = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == expected, proc.stderr
    reports = [p for p in tmp_path.rglob("*.json")]
    assert len(reports) == 1
    doc = json.loads(reports[0].read_text())
    validate_report(doc)
    assert doc["exit_code"] == expected
    junit = list(tmp_path.glob("*.xml"))
    if "--junit" in line:
        assert junit and "<testsuite" in junit[0].read_text()
