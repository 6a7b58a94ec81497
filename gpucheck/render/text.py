"""Small formatting helpers shared by the console and markdown renderers."""

from __future__ import annotations

import re
from typing import Any

from gpucheck.findings import Severity
from gpucheck.report import Report
from gpucheck.snapshot import Gpu, Snapshot


def gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f}"


def memory(gpu: Gpu) -> str:
    if gpu.memory_total_bytes is None:
        return "?"
    return f"{gib(gpu.memory_used_bytes)}/{gib(gpu.memory_total_bytes)} GiB"


def pcie(gpu: Gpu) -> str:
    if gpu.pcie_gen_current is None and gpu.pcie_gen_max is None:
        return "-"
    cur = f"{gpu.pcie_gen_current or '?'}x{gpu.pcie_width_current or '?'}"
    top = f"{gpu.pcie_gen_max or '?'}x{gpu.pcie_width_max or '?'}"
    return cur if cur == top else f"{cur} (max {top})"


def power(gpu: Gpu) -> str:
    if gpu.power_draw_w is None:
        return "-"
    limit = f"/{gpu.power_limit_w:.0f}" if gpu.power_limit_w is not None else ""
    return f"{gpu.power_draw_w:.0f}{limit} W"


def temperature(gpu: Gpu) -> str:
    return "-" if gpu.temperature_c is None else f"{gpu.temperature_c} C"


def driver_line(s: Snapshot) -> str:
    d = s.driver
    if d.version:
        cuda = f" (CUDA {d.cuda_version})" if d.cuda_version else ""
        return f"{d.version}{cuda} via {d.source or '?'}"
    why = d.nvml_error or "not found"
    return f"none ({why})"


def cuda_line(s: Snapshot) -> str:
    parts = [f"toolkit {t.version or '?'} at {t.path}" for t in s.cuda.toolkits]
    return "; ".join(parts) if parts else "no toolkit (pip torch brings its own CUDA runtime)"


def cudnn_line(s: Snapshot) -> str:
    rt = s.torch_runtime
    loaded = f"torch loads {rt.cudnn_version}" if rt and rt.cudnn_version else None
    found = [f"{lib.version or '?'} ({lib.source})" for lib in s.cuda.libs("cudnn")]
    parts = ([loaded] if loaded else []) + (["found " + ", ".join(found)] if found else [])
    return "; ".join(parts) if parts else "none found"


def torch_line(s: Snapshot) -> str:
    t = s.torch
    if not t.installed:
        return "not installed"
    built = f"CUDA {t.cuda}" if t.cuda else (f"ROCm {t.hip}" if t.hip else "CPU only")
    line = f"{t.version} ({built})"
    rt = s.torch_runtime
    if rt is None or rt.status == "skipped":
        return line + "; not imported (static probe)"
    if rt.status != "ok":
        # the last line says what failed; the finding for it carries the rest
        last = next((x.strip() for x in reversed((rt.error or "").splitlines()) if x.strip()), "?")
        return f"{line}; {rt.status}: {last}"
    took = f"import {rt.import_time_s:.1f} s" if rt.import_time_s is not None else None
    if rt.cuda_available:
        avail: str | None = f"CUDA available, {rt.device_count} device(s)"
    else:
        # a CPU build without CUDA says nothing new; a CUDA build without it is the news
        avail = None if built == "CPU only" else "CUDA not available"
    rest = ", ".join(x for x in (avail, took) if x)
    return f"{line}; {rest}" if rest else line


def system_line(s: Snapshot) -> str:
    sy = s.system
    bits = [sy.distro or sy.os, f"kernel {sy.kernel}" if sy.kernel else None, sy.arch]
    if sy.python:
        env = f", venv {sy.python.venv}" if sy.python.venv else ""
        env += f", conda {sy.python.conda_env}" if sy.python.conda_env else ""
        bits.append(f"Python {sy.python.version}{env}")
    if sy.container:
        bits.append(f"in {sy.container}")
    if sy.wsl:
        bits.append("WSL2")
    return ", ".join(b for b in bits if b)


def software_rows(s: Snapshot) -> list[tuple[str, str]]:
    return [
        ("Driver", driver_line(s)),
        ("CUDA", cuda_line(s)),
        ("cuDNN", cudnn_line(s)),
        ("Torch", torch_line(s)),
        ("System", system_line(s)),
    ]


def verdict_reason(report: Report) -> str:
    """Why the verdict is what it is, in a few words."""
    worst = report.findings[0] if report.findings else None
    if report.verdict == "PASS":
        n = len(report.snapshot.gpus)
        what = f"{n} GPU(s)" if n else "no GPU"
        bench = bench_summary(report)
        return f"{what}, no problems found" + (f"; {bench}" if bench else "")
    counts = _counts(report)
    return f"{counts}: {worst.title}" if worst else counts


def _counts(report: Report) -> str:
    parts = []
    for sev, label in ((Severity.ERROR, "error"), (Severity.WARN, "warning")):
        n = report.count(sev)
        if n:
            parts.append(f"{n} {label}{'s' if n > 1 else ''}")
    return ", ".join(parts)


def bench_summary(report: Report) -> str | None:
    if not report.bench:
        return None
    statuses = [b.to_dict().get("status") for b in report.bench]
    if all(s == "skipped" for s in statuses):
        return "smoke benchmark skipped"
    return f"smoke benchmark passed on {statuses.count('ok')}/{len(statuses)} device(s)"


def bench_row(b: dict[str, Any]) -> dict[str, str]:
    """The figures a person wants from one benchmark run, formatted."""
    res = b.get("result") or {}
    train, ev = res.get("train") or {}, res.get("eval") or {}
    mfu = train.get("mfu")

    def num(v: Any, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    return {
        "device": f"{b.get('device', '?')}" + (f" {b['gpu_name']}" if b.get("gpu_name") else ""),
        "status": str(b.get("status", "?")),
        "samples/s": num(train.get("samples_per_s"), ",.1f"),
        "tokens/s": num(train.get("real_tokens_per_s"), ",.0f"),
        "F1": num(ev.get("f1"), ".3f"),
        "MFU": num(mfu * 100, ".0f") + "%" if isinstance(mfu, (int, float)) else "-",
        "time": num(b.get("duration_s"), ".1f") + " s" if b.get("duration_s") is not None else "-",
    }


def bench_gate(b: dict[str, Any]) -> str | None:
    """Which gate a benchmark run was held to, and how it did; None without a result."""
    res = b.get("result") or {}
    gate, ev = res.get("gate"), res.get("eval") or {}
    if not isinstance(gate, dict):
        return None
    verdict = "passed" if gate.get("passed") else "failed"
    threshold, why = gate.get("f1_threshold"), gate.get("why")
    f1 = ev.get("f1")
    f1_text = format(f1, ".3f") if isinstance(f1, (int, float)) else "-"
    if threshold is None:
        line = f"no F1 gate, training works (dev F1 {f1_text}): {verdict}"
        return line + f" ({why or 'user data or checkpoint'})"
    line = f"dev F1 {f1_text} >= {threshold}: {verdict}"
    return line + (f" ({why})" if why else "")


def finding_title(f: Any) -> str:
    """The title, with the GPU it is about unless the title already names it."""
    if f.gpu is None or re.search(rf"\bGPU {f.gpu}\b", f.title):
        return f.title
    return f"{f.title} (GPU {f.gpu})"


# A `code span` (one or more backticks, matched by as many) is one unbreakable token.
_TOKEN = re.compile(r"(?:(`+)(?:(?!\1).)+?\1|[^\s`]+|`+)+")


def wrap_keeping_code(text: str, width: int, first_indent: int, indent: int) -> list[str]:
    """Greedy word wrap that never breaks inside a code span (a command).

    A span wider than the line gets a line of its own and stays whole: pasting half a command
    (`pip install torch` without its `--index-url`) would install the wrong build.
    """
    lines: list[str] = []
    line = ""
    room = max(width - first_indent, 10)
    rest = max(width - indent, 10)
    tokens: list[str] = []
    for m in _TOKEN.finditer(" ".join(text.split())):
        token = m.group(0)
        if "`" in token or len(token) <= rest:
            tokens.append(token)
        else:  # a long path or word that is not code: folded, so prose stays in the width
            tokens += [token[i : i + rest] for i in range(0, len(token), rest)]
    for token in tokens:
        if not line:
            line = token
        elif len(line) + 1 + len(token) <= room:
            line += " " + token
        else:
            lines.append(line)
            line, room = token, rest
    lines.append(line)
    return lines
