"""The rich terminal view: verdict first, then GPUs, software, findings, fix, benchmark."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from gpucheck import __version__
from gpucheck.findings import Finding, Severity
from gpucheck.render import text as fmt
from gpucheck.render.recommendation import print_recommendation
from gpucheck.report import Report

STYLE = {
    Severity.ERROR: "bold red",
    Severity.WARN: "yellow",
    Severity.INFO: "cyan",
    Severity.OK: "green",
}
VERDICT_STYLE = {"PASS": "bold green", "WARN": "bold yellow", "FAIL": "bold red"}


def make_console(
    file: Any = None, *, width: int | None = None, color: bool | None = None
) -> Console:
    """A console that honours NO_COLOR and non-TTY output (rich does both) and stays <= 100 cols."""
    console = Console(file=file, width=width, no_color=(color is False) or None, highlight=False)
    if width is None:
        # A terminal narrower than 100 columns keeps its width; logs and pipes get 100.
        console.width = min(console.width, 100) if console.is_terminal else 100
    return console


def render_console(report: Report, console: Console) -> None:
    if console.is_terminal:
        _render(report, console)
        return
    # In logs and pipes, drop the padding rich puts at the end of table lines.
    with console.capture() as captured:
        _render(report, console)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _render(report: Report, console: Console) -> None:
    console.print(_verdict(report))
    console.print()
    if report.snapshot.gpus:
        _table_or_stack(console, _gpu_table(report), _gpu_stack(report))
        console.print()
    console.print(_software_table(report))
    if report.findings:
        console.print(Text("Findings", style="bold"))
        _print_findings(console, report.findings)
        console.print()
    if report.recommendation is not None:
        console.print(Text("Recommended PyTorch build", style="bold"))
        print_recommendation(report.recommendation, console)
        console.print()
    if report.bench:
        rows = [b.to_dict() for b in report.bench]
        _table_or_stack(console, _bench_table(rows), _bench_stack(rows))
        for raw in rows:  # which gate applied: the preset's F1, the user's, or none
            gate = fmt.bench_gate(raw)
            if gate:
                console.print(Text(f"gate {raw.get('device', '?')}: {gate}"), soft_wrap=True)
    for note in report.notes:
        console.print(Text(f"note: {note}", style="dim"))


def _verdict(report: Report) -> Text:
    t = Text()
    t.append(f" {report.verdict} ", style=f"reverse {VERDICT_STYLE[report.verdict]}")
    t.append(f"  {fmt.verdict_reason(report)}")
    t.append(f"   gpucheck {__version__}", style="dim")
    return t


def _table_or_stack(console: Console, table: Table, stacked: list[tuple[Text, str]]) -> None:
    """The table where it fits; else one short block per row, so no column is dropped."""
    # measured as if the terminal were unlimited: rich would squeeze it to fit otherwise
    if (
        console.measure(table, options=console.options.update_width(10_000)).maximum
        <= console.width
    ):
        console.print(table)
        return
    console.print(Text(str(table.title), style="bold"))
    for head, body in stacked:
        console.print(head, soft_wrap=True)
        for line in fmt.wrap_keeping_code(body, console.width, 3, 3) if body else ():
            console.print(Text("   " + line), soft_wrap=True)


def _gpu_rows(report: Report) -> list[tuple[str, ...]]:
    return [
        (
            str(g.index),
            (g.name or "?") + (" MIG" if g.mig_enabled else ""),
            g.compute_capability or "?",
            fmt.memory(g),
            fmt.temperature(g),
            fmt.power(g),
            fmt.pcie(g),
        )
        for g in report.snapshot.gpus
    ]


def _gpu_states(report: Report) -> list[Text]:
    errors = {f.gpu for f in report.findings if f.gpu is not None and f.severity is Severity.ERROR}
    warns = {f.gpu for f in report.findings if f.gpu is not None and f.severity is Severity.WARN}
    states = []
    for g in report.snapshot.gpus:
        if g.error:
            states.append(Text(g.error, style=STYLE[Severity.ERROR]))
        elif g.index in errors:
            states.append(Text("error", style=STYLE[Severity.ERROR]))
        elif g.index in warns:
            states.append(Text("warn", style=STYLE[Severity.WARN]))
        else:
            states.append(Text("ok", style=STYLE[Severity.OK]))
    return states


def _gpu_table(report: Report) -> Table:
    table = Table(title="GPUs", title_justify="left", title_style="bold", box=None, pad_edge=False)
    for col in ("#", "name", "CC", "memory", "temp", "power", "PCIe", "state"):
        table.add_column(col, no_wrap=col != "name")
    for row, state in zip(_gpu_rows(report), _gpu_states(report), strict=True):
        table.add_row(*row, state)
    return table


def _gpu_stack(report: Report) -> list[tuple[Text, str]]:
    """Narrow terminals: `0 Tesla T4  ok` then the figures, wrapped as prose."""
    blocks = []
    for row, state in zip(_gpu_rows(report), _gpu_states(report), strict=True):
        index, name, cc, mem, temp, power, pcie = row
        head = Text(f"{index}  ").append(name, style="bold").append("  ").append(state)
        body = f"CC {cc}, {mem}, {temp}, {power}, PCIe {pcie}"
        blocks.append((head, body))
    return blocks


def _software_table(report: Report) -> Padding:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a long path is folded, never cut short with "…"
    for name, value in fmt.software_rows(report.snapshot):
        table.add_row(name, value)
    return Padding(table, (0, 0, 1, 0), expand=False)


def _print_findings(console: Console, findings: tuple[Finding, ...]) -> None:
    """Each finding: severity, id and title, then evidence and fix under the title.

    Wrapped here, not by rich: a `code span` (a command) is never split across lines. One that
    does not fit goes on a line of its own, unwrapped (the terminal may fold it visually; a
    copy of it is still one line).
    """
    sev_w = max(len(f.severity.value) for f in findings)
    id_w = max(len(f.id) for f in findings)
    indent = sev_w + id_w + 2 if console.width >= 60 else 2
    for f in findings:
        head = Text(f.severity.value.upper().ljust(sev_w) + " ", style=STYLE[f.severity])
        head.append(f.id.ljust(id_w) + " ", style="dim")
        lines = fmt.wrap_keeping_code(fmt.finding_title(f), console.width, sev_w + id_w + 2, indent)
        console.print(head.append(lines[0]), soft_wrap=True)
        for line in lines[1:]:
            console.print(Text(" " * indent + line), soft_wrap=True)
        for e in f.evidence:
            for line in fmt.wrap_keeping_code(e, console.width, indent, indent):
                console.print(Text(" " * indent + line, style="dim"), soft_wrap=True)
        if f.fix:
            lines = fmt.wrap_keeping_code("fix: " + f.fix, console.width, indent, indent)
            for i, line in enumerate(lines):
                text = Text(" " * indent)
                if i == 0:
                    text.append("fix:", style="bold").append(line[4:])
                else:
                    text.append(line)
                console.print(text, soft_wrap=True)


def _bench_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title="Smoke benchmark (BERT NER fine-tuning)",
        title_justify="left",
        title_style="bold",
        box=None,
        pad_edge=False,
    )
    cells = [fmt.bench_row(b) for b in rows]
    for col in cells[0]:
        table.add_column(
            col, no_wrap=True, justify="left" if col in ("device", "status") else "right"
        )
    for row, raw in zip(cells, rows, strict=True):
        style = "green" if raw.get("status") == "ok" else "red"
        table.add_row(*[Text(v, style=style) if k == "status" else v for k, v in row.items()])
    return table


def _bench_stack(rows: list[dict[str, Any]]) -> list[tuple[Text, str]]:
    blocks = []
    for raw in rows:
        cells = fmt.bench_row(raw)
        style = "green" if raw.get("status") == "ok" else "red"
        head = Text(cells.pop("device") + "  ").append(cells.pop("status"), style=style)
        figures = ", ".join(f"{k} {v}" for k, v in cells.items() if v != "-")
        blocks.append((head, figures))
    return blocks
