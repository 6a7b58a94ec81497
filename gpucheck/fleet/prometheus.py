"""A report as node_exporter textfile-collector metrics (`--prometheus FILE`).

Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` once per family, then samples.
Every metric is a gauge (a snapshot of a state, not a counter this process increments), so
none ends in `_total`; units are in the names (`_seconds`, `_bytes`, `_celsius`, `_ratio`);
versions are `_info` metrics with value 1 and the version in labels. Per-GPU metrics carry
`gpu` (NVML index), `uuid` and `name`. node_exporter needs the file written atomically (it may
read at any moment), so the CLI writes it with gpucheck.io.write_atomic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gpucheck.fleet.summary import node_section

Labels = dict[str, Any]


class Families:
    """Metric families in insertion order, each with its help text and samples."""

    def __init__(self) -> None:
        self._help: dict[str, str] = {}
        self._samples: dict[str, list[tuple[Labels, float]]] = {}

    def add(self, name: str, help_text: str, value: Any, labels: Labels | None = None) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (int, float)):
            return
        self._help.setdefault(name, help_text)
        self._samples.setdefault(name, []).append((labels or {}, float(value)))

    def text(self) -> str:
        out: list[str] = []
        for name, samples in self._samples.items():
            out.append(f"# HELP {name} {escape_help(self._help[name])}")
            out.append(f"# TYPE {name} gauge")
            out += [f"{name}{format_labels(labels)} {format_value(v)}" for labels, v in samples]
        return "\n".join(out) + "\n"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_labels(labels: Labels) -> str:
    items = [(k, v) for k, v in labels.items() if v is not None]
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(str(v))}"' for k, v in items) + "}"


def format_value(v: float) -> str:
    if v != v:  # NaN
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def render_prometheus(doc: dict[str, Any], now: float) -> str:
    """The metrics of one report document (Report.to_dict()), as of `now` (Unix seconds)."""
    m = Families()
    snap = doc.get("snapshot") or {}
    m.add("gpucheck_last_run_timestamp_seconds", "When gpucheck last ran, Unix time.", now)
    for verdict in ("PASS", "WARN", "FAIL"):
        m.add(
            "gpucheck_verdict",
            "1 for the verdict of the last run (PASS, WARN or FAIL), 0 for the others.",
            doc.get("verdict") == verdict,
            {"verdict": verdict},
        )
    m.add(
        "gpucheck_exit_code",
        "Exit code of the last run (0 pass, 1 problems).",
        doc.get("exit_code"),
    )
    summary = doc.get("summary") or {}
    for sev in ("error", "warn", "info"):
        m.add(
            "gpucheck_findings",
            "Findings of the last run by severity.",
            summary.get(sev, 0),
            {"severity": sev},
        )
    gpus = snap.get("gpus") or []
    by_index = {g.get("index"): g for g in gpus}
    for f in doc.get("findings") or []:
        g = by_index.get(f.get("gpu")) or {}
        m.add(
            "gpucheck_finding",
            "1 for each finding of the last run (id and severity as in docs/findings.md).",
            1,
            {"id": f.get("id"), "severity": f.get("severity"), **_gpu_labels(g, f.get("gpu"))},
        )
    ident = snap.get("identity") or {}
    m.add(
        "gpucheck_node_info",
        "Which node this is: host name, Slurm node name, machine id.",
        1,
        {
            "hostname": ident.get("hostname") or "",
            "slurm_node_name": ident.get("slurm_node_name") or "",
            "machine_id": ident.get("machine_id") or "",
        },
    )
    driver = snap.get("driver") or {}
    m.add(
        "gpucheck_driver_info",
        "The NVIDIA driver version and the highest CUDA version it supports.",
        1,
        {"version": driver.get("version") or "", "cuda_version": driver.get("cuda_version") or ""},
    )
    torch, rt = snap.get("torch") or {}, snap.get("torch_runtime") or {}
    m.add(
        "gpucheck_torch_info",
        "The installed torch, the CUDA it was built for, and the cuDNN and NCCL it loads.",
        1,
        {
            "version": torch.get("version") or "",
            "cuda": torch.get("cuda") or "",
            "cudnn": rt.get("cudnn_version") or "",
            "nccl": rt.get("nccl_version") or "",
        },
    )
    m.add("gpucheck_gpus", "GPUs the driver reports.", len(gpus))
    for g in gpus:
        _gpu_metrics(m, g)
    _bench_metrics(m, doc.get("bench") or [], snap, by_index)
    _node_metrics(m, node_section(doc))
    return m.text()


def _gpu_labels(g: dict[str, Any], index: Any = None) -> Labels:
    i = g.get("index", index)
    return {
        "gpu": "" if i is None else str(i),
        "uuid": g.get("uuid") or "",
        "name": g.get("name") or "",
    }


def _gpu_metrics(m: Families, g: dict[str, Any]) -> None:
    lab = _gpu_labels(g)
    m.add(
        "gpucheck_gpu_info",
        "1 per GPU, with its PCI bus id, compute capability and VBIOS.",
        1,
        {
            **lab,
            "pci_bus_id": g.get("pci_bus_id") or "",
            "compute_capability": g.get("compute_capability") or "",
            "vbios": g.get("vbios_version") or "",
        },
    )
    m.add(
        "gpucheck_gpu_lost",
        "1 when the GPU failed as a whole (e.g. GpuIsLost).",
        g.get("error") is not None,
        lab,
    )
    m.add("gpucheck_gpu_ecc_enabled", "1 when ECC is enabled.", g.get("ecc_enabled"), lab)
    for scope in ("volatile", "aggregate"):
        m.add(
            "gpucheck_gpu_ecc_uncorrected_errors",
            "Uncorrected ECC errors NVML reports (volatile: since boot; aggregate: lifetime).",
            g.get(f"ecc_uncorrected_{scope}"),
            {**lab, "scope": scope},
        )
    for cause in ("sbe", "dbe"):
        m.add(
            "gpucheck_gpu_retired_pages",
            "Retired memory pages by cause (single or double bit errors).",
            g.get(f"retired_pages_{cause}"),
            {**lab, "cause": cause},
        )
    m.add(
        "gpucheck_gpu_retired_pages_pending",
        "1 when a page retirement waits for a reset.",
        g.get("retired_pages_pending"),
        lab,
    )
    m.add(
        "gpucheck_gpu_remapped_rows_pending",
        "1 when a row remapping waits for a reset.",
        g.get("remapped_rows_pending"),
        lab,
    )
    m.add(
        "gpucheck_gpu_remapped_rows_failure",
        "1 when a row remapping failed.",
        g.get("remapped_rows_failure"),
        lab,
    )
    for reason in g.get("clock_event_reasons") or []:
        m.add(
            "gpucheck_gpu_clock_event_reason",
            "1 for each active clock event (throttle) reason NVML reports.",
            1,
            {**lab, "reason": reason},
        )
    m.add(
        "gpucheck_gpu_pcie_link_generation",
        "Current PCIe link generation.",
        g.get("pcie_gen_current"),
        lab,
    )
    m.add(
        "gpucheck_gpu_pcie_link_generation_max",
        "Maximum PCIe link generation.",
        g.get("pcie_gen_max"),
        lab,
    )
    m.add(
        "gpucheck_gpu_pcie_link_width_lanes",
        "Current PCIe link width.",
        g.get("pcie_width_current"),
        lab,
    )
    m.add(
        "gpucheck_gpu_pcie_link_width_max_lanes",
        "Maximum PCIe link width.",
        g.get("pcie_width_max"),
        lab,
    )
    m.add("gpucheck_gpu_temperature_celsius", "GPU temperature.", g.get("temperature_c"), lab)
    m.add("gpucheck_gpu_memory_total_bytes", "GPU memory.", g.get("memory_total_bytes"), lab)
    m.add("gpucheck_gpu_power_draw_watts", "GPU power draw.", g.get("power_draw_w"), lab)


def _bench_gpu(device: str, snap: dict[str, Any], by_index: dict) -> dict[str, Any]:
    """The NVML GPU a benchmark device ran on: by UUID where the torch child recorded it
    (CUDA and NVML order can differ), else by the same index."""
    if not device.startswith("cuda"):
        return {}
    index = device.partition(":")[2] or "0"
    rt = snap.get("torch_runtime") or {}
    for d in rt.get("devices") or []:
        if str(d.get("index")) == index and d.get("uuid"):
            for g in by_index.values():
                if g.get("uuid") == d["uuid"]:
                    return g
    return (by_index.get(int(index)) if index.isdigit() else None) or {}


def _bench_metrics(
    m: Families, bench: Iterable[dict[str, Any]], snap: dict, by_index: dict
) -> None:
    for b in bench:
        device = str(b.get("device") or "?")
        g = _bench_gpu(device, snap, by_index) or {}
        lab = {"device": device, **_gpu_labels(g)}
        if not g.get("name") and b.get("gpu_name"):
            lab["name"] = b["gpu_name"]
        res = b.get("result") or {}
        train, ev = res.get("train") or {}, res.get("eval") or {}
        m.add(
            "gpucheck_bench_ok",
            "1 when the smoke benchmark passed on this device.",
            b.get("status") == "ok",
            lab,
        )
        m.add(
            "gpucheck_bench_duration_seconds",
            "Wall time of the smoke benchmark.",
            b.get("duration_s"),
            lab,
        )
        m.add(
            "gpucheck_bench_samples_per_second",
            "Smoke benchmark training throughput.",
            train.get("samples_per_s"),
            lab,
        )
        m.add(
            "gpucheck_bench_f1_ratio", "Smoke benchmark evaluation F1 (0 to 1).", ev.get("f1"), lab
        )
        m.add(
            "gpucheck_bench_mfu_ratio",
            "Smoke benchmark model FLOPs utilisation (0 to 1).",
            train.get("mfu"),
            lab,
        )


def _node_metrics(m: Families, node: Any) -> None:
    """all_reduce bus bandwidth from the node checks (the largest message), when recorded."""
    if not isinstance(node, dict):
        return
    node = node.get("figures") if isinstance(node.get("figures"), dict) else node
    runs = [
        a
        for a in node.get("allreduce") or []
        if isinstance(a, dict)
        and isinstance(a.get("busbw_gbps"), (int, float))
        and isinstance(a.get("bytes"), int)
    ]
    if runs:
        best = max(runs, key=lambda a: a["bytes"])
        m.add(
            "gpucheck_node_allreduce_busbw_bytes_per_second",
            "all_reduce bus bandwidth across the node's GPUs at the largest message size "
            "(busbw as nccl-tests defines it).",
            best["busbw_gbps"] * 1e9,
            {"message_bytes": str(best["bytes"])},
        )
