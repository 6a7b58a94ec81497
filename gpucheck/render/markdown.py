"""Markdown, for pasting into an issue or a wiki page."""

from __future__ import annotations

import re

from gpucheck import __version__
from gpucheck.render import text as fmt
from gpucheck.report import Report


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def code(value: str) -> str:
    """`value` as an inline code span, whatever backticks it holds.

    The fence is one backtick longer than the longest run inside (CommonMark), with a space
    of padding where the value starts or ends with a backtick.
    """
    value = " ".join(value.split())
    runs = [len(r) for r in re.findall(r"`+", value)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def prose(value: str) -> str:
    """Text whose `code spans` stay code: as is when its backticks pair up, else all code."""
    value = " ".join(value.split())
    return value if _spans_close(value) else code(value)


def _spans_close(value: str) -> bool:
    """Every run of backticks that opens a code span is closed by a run of the same length."""
    runs = list(re.finditer(r"`+", value))
    i = 0
    while i < len(runs):
        n = len(runs[i].group(0))
        close = next((j for j in range(i + 1, len(runs)) if len(runs[j].group(0)) == n), None)
        if close is None:
            return False
        i = close + 1
    return True


def fence(lines: list[str], info: str = "") -> list[str]:
    """A fenced block longer than any backtick run inside it."""
    runs = [len(r) for line in lines for r in re.findall(r"`{3,}", line)]
    bar = "`" * max(3, max(runs, default=0) + 1)
    return [bar + info, *lines, bar]


def render_markdown(report: Report) -> str:
    s = report.snapshot
    out = [f"## gpucheck {__version__}: **{report.verdict}**", "", fmt.verdict_reason(report), ""]
    if s.gpus:
        out += [
            "| # | GPU | CC | memory | temp | power | PCIe | error |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for g in s.gpus:
            row = [
                str(g.index),
                g.name or "?",
                g.compute_capability or "?",
                fmt.memory(g),
                fmt.temperature(g),
                fmt.power(g),
                fmt.pcie(g),
                g.error or "",
            ]
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
        out.append("")
    out += ["| | |", "|---|---|"]
    out += [f"| {name} | {_cell(value)} |" for name, value in fmt.software_rows(s)]
    out.append("")
    if report.findings:
        out += ["### Findings", ""]
        for f in report.findings:
            out.append(f"- **{f.severity.value.upper()} {f.id}** {prose(fmt.finding_title(f))}")
            out += [f"  - {code(e)}" for e in f.evidence]  # probed text, shown as it is
            if f.fix:
                out.append(f"  - fix: {prose(f.fix)}")
        out.append("")
    if report.recommendation is not None:
        rec = report.recommendation.to_dict()
        out += ["### Recommended PyTorch build", ""]
        if rec.get("action") == "none":
            out.append("The installed torch already fits.")
        else:
            out += fence([rec[k] for k in ("pip", "uv", "conda") if rec.get(k)], "sh")
        out += [f"- {r}" for r in rec.get("reasons") or []]
        out += [f"- warning: {w}" for w in rec.get("warnings") or []]
        out.append("")
    if report.bench:
        rows = [fmt.bench_row(b.to_dict()) for b in report.bench]
        out += [
            "### Smoke benchmark",
            "",
            "| " + " | ".join(rows[0]) + " |",
            "|" + "---|" * len(rows[0]),
        ]
        out += ["| " + " | ".join(_cell(v) for v in r.values()) + " |" for r in rows]
        out.append("")
        gates = [(b.device, fmt.bench_gate(b.to_dict())) for b in report.bench]
        out += [f"- gate on {d}: {_cell(g)}" for d, g in gates if g]
        if any(g for _, g in gates):
            out.append("")
    out += [f"_{n}_" for n in report.notes]
    return "\n".join(out).rstrip() + "\n"
