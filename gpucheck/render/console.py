"""The rich terminal view: verdict first, then GPUs, software, findings, fix, benchmark."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
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
        console.print(_gpu_table(report))
    console.print(_software_table(report))
    if report.findings:
        console.print(Text("Findings", style="bold"))
        console.print(_findings_table(report.findings))
    if report.recommendation is not None:
        console.print(Text("Recommended PyTorch build", style="bold"))
        print_recommendation(report.recommendation, console)
        console.print()
    if report.bench:
        console.print(_bench_table([b.to_dict() for b in report.bench]))
    for note in report.notes:
        console.print(Text(f"note: {note}", style="dim"))


def _verdict(report: Report) -> Text:
    t = Text()
    t.append(f" {report.verdict} ", style=f"reverse {VERDICT_STYLE[report.verdict]}")
    t.append(f"  {fmt.verdict_reason(report)}")
    t.append(f"   gpucheck {__version__}", style="dim")
    return t


def _gpu_table(report: Report) -> Table:
    table = Table(title="GPUs", title_justify="left", title_style="bold", box=None, pad_edge=False)
    for col in ("#", "name", "CC", "memory", "temp", "power", "PCIe", "state"):
        table.add_column(col, no_wrap=col != "name")
    errors = {f.gpu for f in report.findings if f.gpu is not None and f.severity is Severity.ERROR}
    warns = {f.gpu for f in report.findings if f.gpu is not None and f.severity is Severity.WARN}
    for g in report.snapshot.gpus:
        if g.error:
            state = Text(g.error, style=STYLE[Severity.ERROR])
        elif g.index in errors:
            state = Text("error", style=STYLE[Severity.ERROR])
        elif g.index in warns:
            state = Text("warn", style=STYLE[Severity.WARN])
        else:
            state = Text("ok", style=STYLE[Severity.OK])
        mig = " MIG" if g.mig_enabled else ""
        table.add_row(
            str(g.index),
            (g.name or "?") + mig,
            g.compute_capability or "?",
            fmt.memory(g),
            fmt.temperature(g),
            fmt.power(g),
            fmt.pcie(g),
            state,
        )
    return Padding(table, (0, 0, 1, 0), expand=False)


def _software_table(report: Report) -> Padding:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, value in fmt.software_rows(report.snapshot):
        table.add_row(name, value)
    return Padding(table, (0, 0, 1, 0), expand=False)


def _findings_table(findings: tuple[Finding, ...]) -> Padding:
    # A grid keeps wrapped evidence and fixes aligned under the title, not under the margin.
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column()
    for f in findings:
        body: list[Any] = [Text(f.title + (f" (GPU {f.gpu})" if f.gpu is not None else ""))]
        body += [Text(e, style="dim") for e in f.evidence]
        if f.fix:
            body.append(Text("fix: ", style="bold").append(f.fix, style=""))
        grid.add_row(Text(f.severity.value.upper(), style=STYLE[f.severity]), f.id, Group(*body))
    return Padding(grid, (0, 0, 1, 0), expand=False)


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
