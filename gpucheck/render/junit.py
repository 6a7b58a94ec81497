"""JUnit XML: each finding and each benchmark run as a test case, for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gpucheck.findings import Severity
from gpucheck.report import Report


def render_junit(report: Report) -> str:
    suite = ET.Element("testsuite", name="gpucheck")
    failures = 0

    def case(name: str, classname: str, failure: str | None, detail: str) -> None:
        nonlocal failures
        tc = ET.SubElement(suite, "testcase", name=name, classname=classname)
        if failure is not None:
            failures += 1
            ET.SubElement(tc, "failure", message=failure).text = detail
        elif detail:
            ET.SubElement(tc, "system-out").text = detail

    # The verdict is always a case, so a clean machine still reports one passing test.
    case("verdict", "gpucheck", None if report.exit_code == 0 else report.verdict, report.verdict)
    for f in report.findings:
        failed = f.severity is Severity.ERROR or (report.strict and f.severity is Severity.WARN)
        detail = "\n".join([*f.evidence, *([f"fix: {f.fix}"] if f.fix else [])])
        gpu = f" (GPU {f.gpu})" if f.gpu is not None else ""
        case(
            f"{f.id} {f.title}{gpu}",
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
