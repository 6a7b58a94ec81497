"""Every gpucheck command line in docs/fleet.md (health check, prolog, epilog, cron, systemd,
srun, fleet) parses with the real parser, and every fleet flag is in docs/fleet.md."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import ROOT

from gpucheck.cli import build_parser

DOC = (ROOT / "docs" / "fleet.md").read_text()


def command_lines() -> list[str]:
    text = re.sub(r"\\\n\s*", " ", DOC)  # shell line continuations
    out, fence = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:]
            continue
        if fence not in ("sh", "ini", ""):  # prose, or a JSON/diagram block
            continue
        m = re.search(
            r"(?:^|[\s=])(?:/opt/gpucheck/bin/)?(gpucheck (?:check|probe|node|fleet) .*)", line
        )
        if m and not line.lstrip().startswith("#") and "->" not in line and "..." not in line:
            out.append(m.group(1))
    return out


LINES = command_lines()


def test_the_doc_has_its_examples():
    kinds = {line.split()[1] for line in LINES}
    assert {"check", "node", "fleet"} <= kinds, LINES
    assert len(LINES) >= 7


@pytest.mark.parametrize("line", LINES)
def test_doc_command_line_parses(line):
    argv = shlex.split(line.split(" #")[0])[1:]
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]
    if "--srun" in argv:
        assert isinstance(args.srun, list)


def test_every_fleet_flag_is_in_docs_fleet_md():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    flags = {
        o for a in sub.choices["fleet"]._actions for o in a.option_strings if o.startswith("--")
    }
    flags -= {"--help", "--quiet", "--no-color", "--json", "--markdown", "--junit", "--strict"}
    missing = sorted(f for f in flags if f"`{f}" not in DOC)
    assert missing == []
