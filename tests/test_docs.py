"""Every finding id the code can emit is documented in docs/findings.md, and nothing else is."""

import re

from conftest import ROOT


def test_every_finding_id_is_documented():
    emitted = set()
    for path in (ROOT / "gpucheck").rglob("*.py"):
        emitted |= set(re.findall(r'"(GC\d{3})"', path.read_text()))
    doc = (ROOT / "docs" / "findings.md").read_text()
    documented = set(re.findall(r"^### (GC\d{3})\b", doc, re.MULTILINE))
    in_table = set(re.findall(r"^\| (GC\d{3}) \|", doc, re.MULTILINE))
    assert emitted, "no finding ids found in the code"
    assert emitted - documented == set(), "emitted but without a section in docs/findings.md"
    assert documented - emitted == set(), "documented but never emitted"
    assert in_table == documented, "the summary table and the sections disagree"
