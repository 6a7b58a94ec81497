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


# --- the distribution name: `gpucheck` on PyPI is an unrelated project -----------------------

INSTALL_DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "scripts").glob("*.sh")),
    *sorted((ROOT / "gpucheck").rglob("*.py")),
    *sorted((ROOT / "finetune").rglob("*.py")),
]


def _requirements_on_install_lines(text: str) -> list[str]:
    """Each argument of a `pip install` line that names gpucheck as a requirement."""
    out = []
    for line in text.splitlines():
        m = re.search(r"pip install\b(.*)$", line)
        if not m:
            continue
        args = re.sub(r"\s#.*$", "", m.group(1))  # not the shell comment
        if line[: m.start()].endswith("`"):
            args = args.split("`")[0]  # only the code span
        for word in re.findall(r"""'[^']*'|"[^"]*"|\S+""", args):
            word = word.strip("'\"`),;")
            name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", word)
            if name and name.group(0).lower().replace("_", "-").startswith("gpu"):
                out.append(word)
    return out


def test_pyproject_names_the_distribution_gpucheck_declares():
    import tomllib

    from gpucheck import __dist__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == __dist__ != "gpucheck"
    assert project["scripts"]["gpucheck"] == "gpucheck.cli:main"  # the command stays gpucheck


def test_every_install_line_names_our_distribution():
    from packaging.requirements import Requirement

    from gpucheck import __dist__

    seen = 0
    for path in INSTALL_DOCS:
        for word in _requirements_on_install_lines(path.read_text(encoding="utf-8")):
            req = Requirement(word)  # a valid requirement, as pip would parse it
            assert req.name == __dist__, f"{path.relative_to(ROOT)}: pip install {word}"
            seen += 1
    assert seen >= 4  # README, docs/ci.md twice, the bench hint


def test_bootstrap_default_spec_is_our_distribution(monkeypatch, tmp_path):
    from packaging.requirements import Requirement

    from gpucheck import __dist__, bootstrap

    # Run as an installed package (no checkout around it): the spec names the index's release.
    monkeypatch.setattr(bootstrap, "__file__", str(tmp_path / "gpucheck" / "bootstrap.py"))
    req = Requirement(bootstrap.default_gpucheck_spec())
    assert req.name == __dist__ and req.extras == {"bench"}
