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


# --- narrow terminals, commands never wrapped, hostile text (issue 10 items 6, markdown, JUnit) ---

import re  # noqa: E402

import pytest  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpucheck.render.markdown import code  # noqa: E402

FIX_WITH_COMMANDS = Finding(
    "GC999",
    Severity.ERROR,
    "A finding whose fix holds long commands",
    ("evidence",),
    "Reinstall it: `pip install --force-reinstall torch==2.6.0 --index-url "
    "https://download.pytorch.org/whl/cu118` then check with `python -c 'import torch'`.",
)


def _commands(report: Report) -> list[str]:
    rec = report.recommendation
    shown = rec is not None and rec.action not in ("none", "unsupported")
    cmds = [c for c in (rec.pip, rec.uv, rec.conda) if c] if shown else []
    for f in report.findings:
        cmds += re.findall(r"`([^`]+)`", f.fix or "")
    return cmds


@pytest.mark.parametrize("width", [40, 80])
@pytest.mark.parametrize("name", ["torch_newer_than_driver.json", "ld_library_path_shadow.json"])
def test_every_command_is_on_one_line(width, name):
    report = report_for(name)
    report = Report(
        snapshot=report.snapshot,
        findings=(*report.findings, FIX_WITH_COMMANDS),
        recommendation=report.recommendation,
    )
    buf = io.StringIO()
    render_console(report, make_console(buf, width=width, color=False))
    lines = buf.getvalue().splitlines()
    commands = _commands(report)
    assert any(len(c) > width for c in commands)  # the test means something at this width
    for command in commands:
        assert any(command in line for line in lines), (width, command)


@pytest.mark.parametrize("width", [40, 60, 80])
def test_narrow_terminal_keeps_every_gpu_column(width):
    report = report_for("torch_newer_than_driver.json")
    buf = io.StringIO()
    render_console(report, make_console(buf, width=width, color=False))
    text = buf.getvalue()
    gpu = report.snapshot.gpus[0]
    for cell in (gpu.name, gpu.compute_capability, "0.0/15.0 GiB", "33 C", "7/70 W", "3x16"):
        assert cell in text, (width, cell)
    assert "…" not in text  # nothing cut short


def test_titles_do_not_repeat_the_gpu():
    snap = Snapshot.from_json((SNAPSHOTS / "healthy_h100_x8.json").read_text())
    named = Finding("GC998", Severity.WARN, "GPU 3 runs hot", (), None, gpu=3)
    plain = Finding("GC997", Severity.WARN, "Runs hot", (), None, gpu=3)
    report = Report(snapshot=snap, findings=(named, plain))
    text = console_text(report, color=False)
    assert "GPU 3 runs hot (GPU 3)" not in text and "Runs hot (GPU 3)" in text
    assert "(GPU 3)" not in render_markdown(report).split("Runs hot")[0]


@given(st.text(alphabet="`ab \\|*", max_size=30))
def test_markdown_code_span_survives_any_backticks(value):
    span = code(value)
    fence = re.match(r"`+", span).group(0)
    assert span.endswith(fence)
    inner = span[len(fence) : -len(fence)]
    # no run of exactly the fence's length inside: the span cannot close early
    assert all(len(run) != len(fence) for run in re.findall(r"`+", inner))
    assert inner.strip(" ") == " ".join(value.split()).strip(" ") or inner.startswith(" ")


def test_markdown_fix_with_stray_backtick_is_one_code_span():
    snap = Snapshot.from_json((SNAPSHOTS / "healthy_h100_x8.json").read_text())
    fix = "Run ``weird` thing`` then `ok`, and a stray ` here"
    md = render_markdown(
        Report(snapshot=snap, findings=(Finding("GC996", Severity.WARN, "x", (), fix),))
    )
    line = next(x for x in md.splitlines() if x.startswith("  - fix:"))
    assert line == "  - fix: " + code(fix)


def test_junit_is_valid_xml_with_control_characters():
    snap = Snapshot.from_json((SNAPSHOTS / "healthy_h100_x8.json").read_text())
    nasty = "\x1b[31mTesla\x00 T4\x07\x1b[0m \ufffe end"
    findings = (Finding("GC995", Severity.ERROR, nasty, (nasty, "tab\tok"), "fix \x0b it"),)
    xml = render_junit(Report(snapshot=snap, findings=findings))
    root = ET.fromstring(xml)  # parses: no XML-illegal character left
    name = [tc.get("name") for tc in root.iter("testcase")][1]
    assert name == "GC995 Tesla T4  end"
    assert "tab\tok" in xml
