"""The fleet report as rich text, JSON, markdown and JUnit (one test case per node).

Same conventions as the node renderers in gpucheck/render/: verdict first, then a table; the
console renderer is imported only when it is used.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from gpucheck import __version__
from gpucheck.fleet.aggregate import DISPLAY_LIMIT, Drift, FleetReport, Node
from gpucheck.render.junit import xml_text

COLUMNS = ("node", "verdict", "GPUs", "driver", "CUDA", "torch", "errors", "samples/s")
METRIC_LABEL = {
    "samples_per_s": "samples/s",
    "node_samples_per_s": "node samples/s",
    "matmul_tflops": "matmul TFLOPS",
}


def node_row(n: Node) -> dict[str, str]:
    s, c = n.summary, n.summary.config
    gpus = f"{s.gpu_count}x {c.get('gpu_model')}" if c.get("gpu_model") else str(s.gpu_count)
    errors = ", ".join(s.errors) or ("-" if not s.problem else "task failed")
    if n.expect_mismatches:
        errors += " (differs from --expect)" if errors != "-" else "differs from --expect"
    return {
        "node": n.name,
        "verdict": n.status,
        "GPUs": gpus if not s.problem else "-",
        "driver": c.get("driver") or "-",
        "CUDA": c.get("cuda_driver") or "-",
        "torch": c.get("torch") or "-",
        "errors": errors,
        "samples/s": f"{s.samples_per_s:,.1f}" if s.samples_per_s is not None else "-",
    }


def headline(fleet: FleetReport) -> str:
    n = len(fleet.nodes)
    parts = [f"{n} node{'s' if n != 1 else ''}"]
    for count, label in (
        (len(fleet.failed), "failed"),
        (len(fleet.missing), "missing"),
        (len(fleet.unreadable), "unreadable"),
        (len(fleet.drift), "drifting field(s)"),
        (len(fleet.outliers), "slow GPU(s)"),
    ):
        if count:
            parts.append(f"{count} {label}")
    if len(parts) == 1:
        parts.append("all pass, same configuration")
    return ", ".join(parts)


def drift_line(d: Drift) -> str:
    shown = [f"{node} {value}" for node, value in d.nodes[:DISPLAY_LIMIT]]
    more = len(d.nodes) - DISPLAY_LIMIT
    if more > 0:
        shown.append(f"and {more} more")
    if d.majority is None:
        return f"{d.field}: no majority: " + "; ".join(shown)
    return f"{d.field}: {d.majority} on {d.counts[d.majority]} node(s); differs: " + "; ".join(
        shown
    )


def detail_lines(fleet: FleetReport) -> list[tuple[str, list[str]]]:
    """The sections below the node table, as (title, lines); empty sections are left out."""
    sections = [
        ("Unreadable reports", [f"{u.source}: {u.reason}" for u in fleet.unreadable]),
        (
            "Missing nodes (expected, no report)",
            [", ".join(fleet.missing)] if fleet.missing else [],
        ),
        (
            "Task failures",
            [f"{n.name}: {n.summary.problem}" for n in fleet.nodes if n.summary.problem],
        ),
        (
            "Differs from --expect",
            [
                f"{n.name}: {'; '.join(n.expect_mismatches)}"
                for n in fleet.nodes
                if n.expect_mismatches
            ],
        ),
        ("Drift (differs from the most common value)", [drift_line(d) for d in fleet.drift]),
        (
            "Outliers (>10% below the fleet median of the same GPU model)",
            [
                f"{o.node} {o.gpu} {o.model}: {METRIC_LABEL.get(o.metric, o.metric)} "
                f"{o.value:,.1f} vs median {o.median:,.1f} ({o.ratio:.0%})"
                for o in fleet.outliers
            ],
        ),
        (
            "Not expected (reported, but not in --nodes)",
            [", ".join(fleet.extra)] if fleet.extra else [],
        ),
    ]
    return [(title, lines) for title, lines in sections if lines]


# --- JSON -----------------------------------------------------------------------------------


def render_json(fleet: FleetReport) -> str:
    return json.dumps(fleet.to_dict(), indent=2) + "\n"


# --- markdown -------------------------------------------------------------------------------


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def render_markdown(fleet: FleetReport) -> str:
    out = [f"## gpucheck {__version__} fleet: **{fleet.verdict}**", "", headline(fleet), ""]
    if fleet.nodes:
        out += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += [
            "| " + " | ".join(_cell(v) for v in node_row(n).values()) + " |" for n in fleet.nodes
        ]
        out.append("")
    for title, lines in detail_lines(fleet):
        out += [f"### {title}", ""] + [f"- {_cell(line)}" for line in lines] + [""]
    out += [f"_{n}_" for n in fleet.notes]
    return "\n".join(out).rstrip() + "\n"


# --- JUnit ----------------------------------------------------------------------------------


def render_junit(fleet: FleetReport) -> str:
    """One test case per node (failed, missing and unreadable ones fail), for CI dashboards."""
    suite = ET.Element("testsuite", name="gpucheck.fleet")
    failures = 0

    def case(name: str, failure: str | None, detail: str) -> None:
        nonlocal failures
        name, detail = xml_text(name), xml_text(detail)
        tc = ET.SubElement(suite, "testcase", name=name, classname="gpucheck.fleet.node")
        if failure is not None:
            failures += 1
            ET.SubElement(tc, "failure", message=xml_text(failure)).text = detail
        elif detail:
            ET.SubElement(tc, "system-out").text = detail

    for n in fleet.nodes:
        s = n.summary
        detail = "\n".join(
            [f"{k}: {v}" for k, v in node_row(n).items() if k != "node"]
            + list(n.expect_mismatches)
            + ([s.problem] if s.problem else [])
        )
        failed = n.status == "FAIL" or (fleet.strict and n.status == "WARN")
        why = s.problem or ", ".join(s.errors + n.expect_mismatches) or n.status
        case(n.name, why if failed else None, detail)
    for u in fleet.unreadable:
        case(u.stem, f"unreadable report: {u.reason}", u.source)
    for name in fleet.missing:
        case(name, "missing: expected, but no report", "")
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


# --- rich console ---------------------------------------------------------------------------


def render_console(fleet: FleetReport, console: Any) -> None:
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from gpucheck.render.console import VERDICT_STYLE

    def emit() -> None:
        t = Text()
        t.append(f" {fleet.verdict} ", style=f"reverse {VERDICT_STYLE[fleet.verdict]}")
        t.append(f"  {headline(fleet)}")
        t.append(f"   gpucheck {__version__} fleet", style="dim")
        console.print(t)
        console.print()
        if fleet.nodes:
            table = Table(box=None, pad_edge=False)
            for col in COLUMNS:
                table.add_column(col, no_wrap=col not in ("GPUs", "errors"))
            for n in fleet.nodes:
                cells = {k: Text(v) for k, v in node_row(n).items()}  # never rich markup
                cells["verdict"] = Text(n.status, style=VERDICT_STYLE.get(n.status, ""))
                table.add_row(*cells.values())
            console.print(Padding(table, (0, 0, 1, 0), expand=False))
        for title, lines in detail_lines(fleet):
            console.print(Text(title, style="bold"))
            for line in lines:
                console.print(Text(f"  {line}"))
            console.print()
        for note in fleet.notes:
            console.print(Text(f"note: {note}", style="dim"))

    if console.is_terminal:
        emit()
        return
    with console.capture() as captured:  # logs and pipes: no trailing padding
        emit()
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
