import io
import xml.etree.ElementTree as ET

from conftest import SNAPSHOTS

from gpucheck.diagnose import diagnose
from gpucheck.findings import Finding, Severity
from gpucheck.recommend import recommend
from gpucheck.render import render_junit, render_markdown
from gpucheck.render.console import make_console, render_console
from gpucheck.report import Report
from gpucheck.snapshot import Snapshot


def report_for(name: str, **kw) -> Report:
    snap = Snapshot.from_json((SNAPSHOTS / name).read_text())
    return Report(
        snapshot=snap, findings=tuple(diagnose(snap)), recommendation=recommend(snap), **kw
    )


def console_text(report: Report, **kw) -> str:
    buf = io.StringIO()
    render_console(report, make_console(buf, width=100, **kw))
    return buf.getvalue()


def test_console_verdict_first_then_gpus_software_findings():
    report = report_for("driver_mismatch.json")
    text = console_text(report, color=False)
    lines = text.splitlines()
    assert lines[0].lstrip().startswith("FAIL")
    assert report.findings[0].title in lines[0]  # the worst finding is the reason
    for section in ("Driver", "CUDA", "cuDNN", "Torch", "System", "Findings"):
        assert section in text
    assert "fix:" in text
    assert "\x1b[" not in text
    assert max(map(len, lines)) <= 100


def test_console_lists_every_gpu_and_bench_rows():
    report = report_for("healthy_h100_x8.json")
    text = console_text(report, color=False)
    assert text.splitlines()[0].lstrip().startswith(("PASS", "WARN"))
    for gpu in report.snapshot.gpus:
        assert gpu.name in text
    assert "Recommended PyTorch build" in text


def test_no_color_env_is_honoured(monkeypatch):
    report = report_for("driver_mismatch.json")
    assert "\x1b[" not in console_text(report, color=None)  # StringIO is no TTY: rich drops colour
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    console = make_console(buf, width=100)
    console.force_terminal = True  # even on a terminal, NO_COLOR wins
    render_console(report, console)
    assert "\x1b[31" not in buf.getvalue() and "\x1b[1;31" not in buf.getvalue()


def test_markdown_has_findings_and_escapes_pipes():
    report = report_for("driver_mismatch.json")
    md = render_markdown(report)
    assert md.startswith("## gpucheck") and "**FAIL**" in md
    for f in report.findings:
        assert f.id in md


def test_junit_counts_error_findings_as_failures():
    snap = Snapshot.from_json((SNAPSHOTS / "healthy_h100_x8.json").read_text())
    findings = (
        Finding("GC999", Severity.ERROR, "broken <thing> & more", ("a",), "fix it"),
        Finding("GC998", Severity.WARN, "meh", (), None),
    )
    root = ET.fromstring(render_junit(Report(snapshot=snap, findings=findings)))
    assert root.get("tests") == "3" and root.get("failures") == "2"  # verdict + the error
    strict = ET.fromstring(render_junit(Report(snapshot=snap, findings=findings, strict=True)))
    assert strict.get("failures") == "3"
    names = [tc.get("name") for tc in root.iter("testcase")]
    assert "GC999 broken <thing> & more" in names


def test_verdict_line_says_how_the_benchmark_went():
    from gpucheck.bench import BenchResult
    from gpucheck.render.text import verdict_reason

    snap = Snapshot.from_json((SNAPSHOTS / "this_machine.json").read_text())

    def line(*statuses):
        bench = tuple(
            BenchResult(device="cpu", preset="tiny", status=s, duration_s=1.0) for s in statuses
        )
        return verdict_reason(Report(snapshot=snap, bench=bench))

    assert line("ok").endswith("smoke benchmark passed on 1/1 device(s)")
    assert line("skipped").endswith("smoke benchmark skipped")
    assert "1/2" in line("ok", "crash")
