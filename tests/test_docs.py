"""Every finding id the code can emit is documented in docs/findings.md, and nothing else is."""

import re

from conftest import ROOT


def test_every_finding_id_is_documented():
    from gpucheck.diagnose import all_ids

    emitted = set(all_ids())  # the registry: rules declare their ids, other emitters too
    doc = (ROOT / "docs" / "findings.md").read_text()
    documented = set(re.findall(r"^### (GC\d{3})\b", doc, re.MULTILINE))
    in_table = set(re.findall(r"^\| (GC\d{3}) \|", doc, re.MULTILINE))
    assert emitted, "no finding ids found in the code"
    assert emitted - documented == set(), "emitted but without a section in docs/findings.md"
    assert documented - emitted == set(), "documented but never emitted"
    assert in_table == documented, "the summary table and the sections disagree"


def _long_options(parser) -> set[str]:
    import argparse

    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _long_options(sub)
        found |= {o for o in action.option_strings if o.startswith("--")}
    return found - {"--help"}


def test_every_flag_is_documented():
    from finetune.cli import build_parser as finetune_parser
    from gpucheck.cli import build_parser

    docs = "".join((ROOT / "docs" / name).read_text() for name in ("cli.md", "recommend.md"))
    missing = sorted(o for o in _long_options(build_parser()) if f"`{o}" not in docs)
    assert missing == [], "gpucheck flags missing from docs/cli.md and docs/recommend.md"
    finetune_doc = (ROOT / "docs" / "finetune.md").read_text()
    missing = sorted(o for o in _long_options(finetune_parser()) if f"`{o}" not in finetune_doc)
    assert missing == [], "python -m finetune flags missing from docs/finetune.md"


def test_the_version_is_written_in_one_place():
    """pyproject.toml reads it from gpucheck/__init__.py; nothing else spells it out."""
    import gpucheck

    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic = \["version"\]', project, re.M)
    assert not re.search(r"^version\s*=", project, re.M)
    assert 'path = "gpucheck/__init__.py"' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", gpucheck.__version__)


def test_ci_runs_lint_and_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    assert re.search(r"^make lint$", ci, re.M) and re.search(r"^make test$", ci, re.M)


def test_no_shared_paths_in_docs():
    """Users do not have the team's shared/ folder: say the fact and its source instead."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "docs").rglob("*")
        if path.suffix in (".md", ".json") and "shared/" in path.read_text()
    ]
    assert offenders == []
