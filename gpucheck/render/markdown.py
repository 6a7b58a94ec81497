"""Markdown, for pasting into an issue or a wiki page."""

from __future__ import annotations

from gpucheck import __version__
from gpucheck.render import text as fmt
from gpucheck.report import Report


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


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
            gpu = f" (GPU {f.gpu})" if f.gpu is not None else ""
            out.append(f"- **{f.severity.value.upper()} {f.id}** {f.title}{gpu}")
            out += [f"  - {e}" for e in f.evidence]
            if f.fix:
                out.append(f"  - fix: `{f.fix}`" if "\n" not in f.fix else f"  - fix: {f.fix}")
        out.append("")
    if report.recommendation is not None:
        rec = report.recommendation.to_dict()
        out += ["### Recommended PyTorch build", ""]
        if rec.get("action") == "none":
            out.append("The installed torch already fits.")
        else:
            out += ["```sh", *(rec[k] for k in ("pip", "uv", "conda") if rec.get(k)), "```"]
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
    out += [f"_{n}_" for n in report.notes]
    return "\n".join(out).rstrip() + "\n"
