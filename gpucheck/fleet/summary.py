"""One node's report, boiled down to the few figures the fleet compares.

A report (`gpucheck check --json`, docs/schema/report.schema.json) is tens of kilobytes; its
summary is a few hundred bytes. The fleet reads one report at a time and keeps only summaries,
so memory grows by a summary per node, never by a report.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from gpucheck.report import REPORT_SCHEMA_VERSION
from gpucheck.snapshot import SCHEMA_VERSION

MAX_REPORT_BYTES = 64 * 1024 * 1024

# The fields compared across nodes (drift) and accepted by --expect, in display order.
DRIFT_FIELDS = (
    "driver",
    "cuda_driver",
    "vbios",
    "gpu_model",
    "gpu_count",
    "torch",
    "cudnn",
    "nccl",
)


@dataclass(frozen=True)
class GpuFigure:
    """One measured figure of one GPU: bench samples/s or matmul TFLOPS."""

    metric: str  # "samples_per_s" | "matmul_tflops"
    gpu: str  # "cuda:0", or the GPU index the node check measured
    model: str | None  # the GPU's name: outliers are judged among the same model
    value: float


@dataclass(frozen=True)
class NodeSummary:
    source: str  # the report file
    stem: str  # the file name without .json: gpu07.json -> gpu07
    slurm_node_name: str | None = None
    hostname: str | None = None
    machine_id: str | None = None
    verdict: str = "FAIL"  # PASS | WARN | FAIL
    gpu_count: int = 0
    config: dict[str, str | None] = field(default_factory=dict)  # DRIFT_FIELDS -> value
    errors: tuple[str, ...] = ()  # ids of error findings
    warnings: tuple[str, ...] = ()  # ids of warn findings
    figures: tuple[GpuFigure, ...] = ()
    samples_per_s: float | None = None  # the node's bench throughput, summed over its GPUs
    created: str | None = None
    problem: str | None = None  # set when the node's task failed and there is no report

    @property
    def identity_name(self) -> str | None:
        """The name the report gives itself: Slurm's node name, else the short host name."""
        if self.slurm_node_name:
            return self.slurm_node_name
        if self.hostname:
            return self.hostname.split(".")[0]
        return None

    @property
    def aliases(self) -> set[str]:
        """Every name this node may be expected under (Slurm name, host names, file stem)."""
        names = {self.stem}
        for n in (self.slurm_node_name, self.hostname):
            if n:
                names |= {n, n.split(".")[0]}
        return names


@dataclass(frozen=True)
class Unreadable:
    source: str
    stem: str
    reason: str  # one line


def stem_of(path: str) -> str:
    base = os.path.basename(path)
    return clean(base[: -len(".json")] if base.endswith(".json") else base) or "?"


# A report is a file from anywhere: its strings reach terminals, XML and markdown. Terminal
# escape sequences (their printable tail would remain) and other control characters go, once,
# here; what is left is capped at MAX_TEXT characters.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
MAX_TEXT = 200


def clean(value: Any) -> Any:
    """`value` without control characters and at most MAX_TEXT long, when it is a string."""
    if not isinstance(value, str):
        return value
    text = _CONTROL.sub("", _ANSI.sub("", value)).strip()
    return text[:MAX_TEXT] if text else None


def read_report(path: str) -> NodeSummary | Unreadable:
    """Read and summarise one report file; any problem is an Unreadable, never an exception."""
    stem = stem_of(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        return Unreadable(path, stem, f"cannot read: {exc.strerror or exc}")
    if len(data) > MAX_REPORT_BYTES:
        return Unreadable(path, stem, f"larger than {MAX_REPORT_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Unreadable(path, stem, "not UTF-8 text")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        # the input ended inside a value: a file cut short (a full disk, a killed copy)
        if text.strip() and (
            exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        ):
            return Unreadable(path, stem, "truncated JSON (the file ends mid-document)")
        return Unreadable(path, stem, f"not valid JSON: {exc}")
    except RecursionError:
        return Unreadable(path, stem, "not valid JSON: nested too deeply")
    try:
        return summarize(doc, path)
    except ReportError as exc:
        return Unreadable(path, stem, clean(str(exc)) or "not a report")


class ReportError(ValueError):
    """A JSON document that is not a gpucheck report this version can read."""


def summarize(doc: Any, source: str) -> NodeSummary:
    """The summary of one parsed report document (pure). Raises ReportError."""
    if not isinstance(doc, dict):
        raise ReportError("not a gpucheck report: the JSON is not an object")
    tool = doc.get("tool")
    if not isinstance(tool, dict) or tool.get("name") != "gpucheck":
        if "system" in doc and "schema_version" in doc:
            raise ReportError("a snapshot, not a report: run `gpucheck check --from-snapshot`")
        raise ReportError("not a gpucheck report (no tool.name 'gpucheck')")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ReportError("no integer schema_version")
    if version > REPORT_SCHEMA_VERSION:
        raise ReportError(
            f"report schema_version {version} is newer than this gpucheck reads "
            f"({REPORT_SCHEMA_VERSION}); upgrade gpucheck"
        )
    verdict = doc.get("verdict")
    if verdict not in ("PASS", "WARN", "FAIL"):
        raise ReportError(f"bad verdict {verdict!r:.40}")
    snap = SnapshotView(doc.get("snapshot"))
    findings = doc.get("findings")
    if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
        raise ReportError("findings is not a list of objects")
    ids = {sev: [] for sev in ("error", "warn")}
    for f in findings:
        if f.get("severity") in ids and isinstance(f.get("id"), str):
            ids[f["severity"]].append(f["id"])
    bench = doc.get("bench")
    if bench is not None and not (
        isinstance(bench, list) and all(isinstance(b, dict) for b in bench)
    ):
        raise ReportError("bench is not a list of objects")
    figures = _bench_figures(bench or [], snap) + _node_figures(node_section(doc))
    samples = [f.value for f in figures if f.metric == "samples_per_s"]
    ident = snap.identity
    return NodeSummary(
        source=source,
        stem=stem_of(source),
        slurm_node_name=clean(ident.get("slurm_node_name")),
        hostname=clean(ident.get("hostname")),
        machine_id=clean(ident.get("machine_id")),
        verdict=verdict,
        gpu_count=len(snap.gpus),
        config=node_config(snap),
        errors=tuple(dict.fromkeys(map(clean, ids["error"]))),
        warnings=tuple(dict.fromkeys(map(clean, ids["warn"]))),
        figures=tuple(figures),
        samples_per_s=round(sum(samples), 3) if samples else None,
        created=snap.created,
    )


class SnapshotView:
    """The few snapshot fields the fleet reads, type-checked, without rebuilding the whole
    Snapshot: that costs ~10 ms a report, this ~0.1 ms (`make bench`: 1,000 reports)."""

    def __init__(self, snap: Any) -> None:
        if not isinstance(snap, dict):
            raise ReportError("its snapshot: not an object")
        version = snap.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ReportError("its snapshot: no integer schema_version")
        if version > SCHEMA_VERSION:
            raise ReportError(
                f"its snapshot schema_version {version} is newer than this gpucheck reads "
                f"({SCHEMA_VERSION}); upgrade gpucheck"
            )
        gpus = snap.get("gpus", [])
        if not isinstance(gpus, list) or not all(isinstance(g, dict) for g in gpus):
            raise ReportError("its snapshot: gpus is not a list of objects")
        self.gpus = gpus
        self.driver = _section(snap, "driver")
        self.torch = _section(snap, "torch")
        self.runtime = _section(snap, "torch_runtime")
        self.identity = _section(snap, "identity")
        self.created = _text(snap, "created", "snapshot")
        for where, d, keys in (
            ("driver", self.driver, ("version", "cuda_version")),
            ("torch", self.torch, ("version",)),
            ("torch_runtime", self.runtime, ("cudnn_version", "nccl_version")),
            ("identity", self.identity, ("hostname", "slurm_node_name", "machine_id")),
        ):
            for key in keys:
                _text(d, key, where)
        for i, g in enumerate(gpus):
            for key in ("name", "uuid", "vbios_version"):
                _text(g, key, f"gpus[{i}]")


def _section(snap: dict, key: str) -> dict:
    value = snap.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReportError(f"its snapshot: {key} is not an object")
    return value


def _text(d: dict, key: str, where: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ReportError(f"its snapshot: {where}.{key} is not a string")
    return value


def node_config(snap: SnapshotView) -> dict[str, str | None]:
    """The values compared across the fleet; None where the node did not record one."""
    names = sorted({g["name"] for g in snap.gpus if g.get("name")})
    vbios = sorted({g["vbios_version"] for g in snap.gpus if g.get("vbios_version")})
    return {
        key: clean(value)
        for key, value in {
            "driver": snap.driver.get("version"),
            "cuda_driver": snap.driver.get("cuda_version"),
            "vbios": ", ".join(vbios) or None,
            "gpu_model": " + ".join(names) or None,
            "gpu_count": str(len(snap.gpus)),
            "torch": snap.torch.get("version") if snap.torch.get("installed") else None,
            "cudnn": snap.runtime.get("cudnn_version"),
            "nccl": snap.runtime.get("nccl_version"),
        }.items()
    }


def _bench_figures(bench: list[dict[str, Any]], snap: SnapshotView) -> list[GpuFigure]:
    out = []
    for b in bench:
        if b.get("status") != "ok":
            continue
        train = (b.get("result") or {}).get("train") or {}
        value = train.get("samples_per_s") if isinstance(train, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        device = str(b.get("device") or "?")
        model = clean(b.get("gpu_name")) or _cpu(device)
        out.append(GpuFigure("samples_per_s", clean(device), model, value))
    return out


def _cpu(device: str) -> str | None:
    return "CPU" if device == "cpu" else None


def node_section(doc: dict[str, Any]) -> Any:
    """The node checks' recorded figures in a report (gpucheck/node/figures.py), if any."""
    for key in ("node", "node_figures"):
        if isinstance(doc.get(key), dict):
            return doc[key]
    return None


def _node_figures(node: Any) -> list[GpuFigure]:
    """Matmul TFLOPS per GPU from the node checks, when the report has them."""
    if not isinstance(node, dict):
        return []
    node = node.get("figures") if isinstance(node.get("figures"), dict) else node
    out = []
    for row in node.get("gpus") if isinstance(node.get("gpus"), list) else []:
        if not isinstance(row, dict):
            continue
        value = row.get("matmul_tflops")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        gpu = clean(str(row.get("index", "?")))
        out.append(GpuFigure("matmul_tflops", gpu, clean(row.get("name")), value))
    return out
