"""JUnit XML: each finding and each benchmark run as a test case, for CI dashboards."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from gpucheck.findings import Severity
from gpucheck.render import text as fmt
from gpucheck.report import Report

# Terminal escape sequences first (their printable tail would remain), then every character
# XML 1.0 does not allow (control characters but tab/newline/CR, lone surrogates, U+FFFE/F).
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: str) -> str:
    """`value` with what XML cannot carry removed; ElementTree escapes the rest."""
    return _NOT_XML.sub("", _ANSI.sub("", value))


def render_junit(report: Report) -> str:
    suite = ET.Element("testsuite", name="gpucheck")
    failures = 0

    def case(name: str, classname: str, failure: str | None, detail: str) -> None:
        nonlocal failures
        tc = ET.SubElement(suite, "testcase", name=xml_text(name), classname=classname)
        if failure is not None:
            failures += 1
            ET.SubElement(tc, "failure", message=xml_text(failure)).text = xml_text(detail)
        elif detail:
            ET.SubElement(tc, "system-out").text = xml_text(detail)

    # The verdict is always a case, so a clean machine still reports one passing test.
    case("verdict", "gpucheck", None if report.exit_code == 0 else report.verdict, report.verdict)
    for f in report.findings:
        failed = f.severity is Severity.ERROR or (report.strict and f.severity is Severity.WARN)
        detail = "\n".join([*f.evidence, *([f"fix: {f.fix}"] if f.fix else [])])
        case(
            f"{f.id} {fmt.finding_title(f)}",
            f"gpucheck.findings.{f.severity.value}",
            f.title if failed else None,
            detail,
        )
    for b in report.bench or ():
        d = b.to_dict()
        ok = d.get("status") == "ok"
        case(
            f"bench {d.get('device')}",
            "gpucheck.bench",
            None if ok else str(d.get("status")),
            str(d.get("error") or ""),
        )
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
