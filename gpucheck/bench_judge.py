"""The smoke benchmark's findings: GC401-GC407 from each run, GC406 across same-model GPUs,
and GC308 from the NVML samples taken while the benchmark loaded each GPU. Pure: it reads
`BenchResult`s (gpucheck/bench.py) and returns findings; `gpu` is always the NVML index.
"""

from __future__ import annotations

import shlex
import statistics
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from gpucheck.findings import Finding, Severity
from gpucheck.node import bench_glue  # torchrun runs: GC620-GC623
from gpucheck.probe.sampler import busy

if TYPE_CHECKING:
    from gpucheck.bench import BenchResult

BUSY_PERCENT = 50  # utilisation at which a sample counts as "under load" (as GC308's rule)
SLOW_RATIO = 0.7  # a GPU under 0.7x the median samples/s of its same-model peers is flagged


def _smi_i(r: BenchResult) -> str:
    """ " -i N" with the NVML index when known (nvidia-smi's numbering, not CUDA's)."""
    return f" -i {r.gpu}" if r.gpu is not None else ""


def _who(r: BenchResult) -> str:
    return f"{r.device} ({r.gpu_name})" if r.gpu_name else r.device


_VALUED = ("--model", "--train-file", "--eval-file", "--f1-gate")  # gpucheck passes these on


def _user_flags(command: Sequence[str]) -> list[str]:
    """The user's data/checkpoint flags in the child's command line, for the rerun hint."""
    out: list[str] = []
    for i, arg in enumerate(command):
        if arg in _VALUED and i + 1 < len(command):
            out += [arg, shlex.quote(command[i + 1])]
        elif arg == "--download":
            out.append(arg)
    return out


def _rerun(r: BenchResult, *more: str) -> str:
    return " ".join(
        [
            "python -m finetune",
            "--preset",
            r.preset,
            "--device",
            r.device,
            *_user_flags(r.command),
            *more,
        ]
    )


def bench_findings(results: Iterable[BenchResult]) -> list[Finding]:
    results = list(results)
    out: list[Finding] = []
    for r in results:
        if "launch" in r.extra:  # a torchrun run: GC620-GC623 name the rank, host and GPU
            out.extend(bench_glue.distributed_findings(r))
            if r.status in ("timeout", "crash"):
                continue
        gpu = r.gpu  # the NVML index (nvidia-smi's), not the CUDA one
        doc = r.result or {}
        ev = doc.get("eval") or {}
        tr = doc.get("train") or {}
        gate = doc.get("gate") or {}
        base = (f"preset {r.preset} on {_who(r)}", f"{r.duration_s:.1f} s")
        if r.status == "gate-failed":
            reasons = gate.get("reasons") or []
            out.append(
                Finding(
                    "GC401",
                    Severity.ERROR,
                    f"smoke benchmark failed its gate on {_who(r)}",
                    (
                        *base,
                        *reasons,
                        _f1_line(ev, gate),
                        f"loss {tr.get('loss_first')} -> {tr.get('loss_last')}",
                    ),
                    "The training ran but did not learn enough. Look at the GPU health findings "
                    "(ECC, throttling) first, then rerun by hand and compare with fp32: "
                    f"`{_rerun(r)}` and `{_rerun(r, '--dtype fp32')}`.",
                    gpu,
                )
            )
        elif r.status == "nan-loss":
            out.append(
                Finding(
                    "GC402",
                    Severity.ERROR,
                    f"the training loss became NaN or infinite on {_who(r)}",
                    (
                        *base,
                        f"dtype {doc.get('dtype')}",
                        f"loss {tr.get('loss_first')} -> {tr.get('loss_last')}",
                    ),
                    "Mixed-precision overflow or a faulty GPU: rerun in fp32 "
                    f"(`{_rerun(r, '--dtype fp32')}`); if fp32 also fails, check ECC errors "
                    "(`nvidia-smi -q -d ECC`) and the driver log (`sudo dmesg | grep -i xid`).",
                    gpu,
                )
            )
        elif r.status == "oom":
            retried = (
                f"retried with batch size {r.retried_with_batch}"
                if r.retried_with_batch
                else "not retried"
            )
            out.append(
                Finding(
                    "GC403",
                    Severity.ERROR,
                    f"the smoke benchmark ran out of memory on {_who(r)}",
                    (*base, retried, *([r.error] if r.error else [])),
                    "Free the GPU (`nvidia-smi` lists the processes holding memory) or run a smaller "
                    f"preset: `gpucheck bench --bench-preset small` or `{_rerun(r, '--batch-size 8')}`.",
                    gpu,
                )
            )
        elif r.status == "timeout" and r.not_run:
            out.append(
                Finding(
                    "GC404",
                    Severity.WARN,
                    f"the smoke benchmark did not run on {_who(r)}: the whole-run --timeout ran out",
                    (*([r.error] if r.error else []),),
                    "Give the run more time (`--timeout`), or benchmark fewer GPUs at a time "
                    f"(`gpucheck bench --bench-device {r.device}`).",
                    gpu,
                )
            )
        elif r.status == "timeout":
            smaller = (
                " or a smaller preset (`--bench-preset tiny`)"
                if r.preset != "tiny"
                else " or fewer steps (`gpucheck bench --bench-preset tiny` already runs the "
                f"smallest model: `{_rerun(r, '--max-steps 20')}`)"
            )
            out.append(
                Finding(
                    "GC404",
                    Severity.ERROR,
                    f"the smoke benchmark timed out on {_who(r)}",
                    (*base, *([r.error] if r.error else [])),
                    "A hung or very slow device, or a timeout too short for the preset: check "
                    "`nvidia-smi` for a GPU stuck at 100% or in an error state, then rerun with more "
                    f"time (`gpucheck bench --bench-timeout 1800`){smaller}.",
                    gpu,
                )
            )
        elif r.status == "crash":
            said = [ln for ln in (r.stderr_tail or "").strip().splitlines()[-3:] if ln != r.error]
            # exit status 2 is finetune's "cannot use this input" (docs/finetune.md): a bad option,
            # or a hub model or hf: dataset that is not in the cache, not a crash to debug
            refused = r.returncode == 2
            out.append(
                Finding(
                    "GC405",
                    Severity.ERROR,
                    f"the smoke benchmark {'refused its input' if refused else 'crashed'} on "
                    f"{_who(r)}",
                    (*base, f"exit status {r.returncode}", *([r.error] if r.error else []), *said),
                    "Correct what the message names; a hub model or `hf:` dataset that is not in "
                    "the local Hugging Face cache needs `--download`."
                    if refused
                    else f"Run it by hand to see the whole error: `FINETUNE_DEBUG=1 {_rerun(r)}`.",
                    gpu,
                )
            )
        elif r.status == "skipped":
            out.append(
                Finding(
                    "GC407",
                    Severity.INFO,
                    "smoke benchmark skipped: torch or transformers missing",
                    (*base, *([r.error] if r.error else [])),
                    "Install the benchmark's packages: `pip install 'gpu-path-check[bench]'` (with the torch "
                    "build `gpucheck recommend` names).",
                    gpu,
                )
            )
    out.extend(_slow_gpus(results))
    out.extend(pcie_under_load(results))
    return out


def pcie_under_load(results: Iterable[BenchResult]) -> list[Finding]:
    """GC308 judged on the NVML samples taken while the benchmark loaded each GPU.

    At idle the link trains down by design; under load it should run at its maximum
    generation and width. A link below either while the GPU is busy is a slot, riser or BIOS
    problem (PCI Express Base Specification: link speed and width are negotiated at training).
    A torchrun run over several GPUs carries the samples of each; they are judged per GPU.
    """
    out = []
    for r in results:
        by_gpu: dict[int, list] = {}
        for s in busy(r.samples, BUSY_PERCENT):
            by_gpu.setdefault(s.gpu, []).append(s)
        for gpu, load in sorted(by_gpu.items()):
            finding = _link_finding(r, gpu, load)
            if finding is not None:
                out.append(finding)
    return out


def _link_finding(r: BenchResult, gpu: int, load: list) -> Finding | None:
    gens = [s.pcie_gen_current for s in load if s.pcie_gen_current is not None]
    widths = [s.pcie_width_current for s in load if s.pcie_width_current is not None]
    gen_max = next((s.pcie_gen_max for s in load if s.pcie_gen_max), None)
    width_max = next((s.pcie_width_max for s in load if s.pcie_width_max), None)
    if not gens or not widths or gen_max is None or width_max is None:
        return None
    # the link as it ran most of the time under load
    gen, width = statistics.median_low(gens), statistics.median_low(widths)
    ev = (
        f"GPU {gpu} during {_who(r)}: PCIe gen {gen} of {gen_max}, width x{width} of "
        f"x{width_max} (median of {len(load)} NVML samples at >= {BUSY_PERCENT}% utilization)",
        f"lowest seen under load: gen {min(gens)}, x{min(widths)}",
    )
    if gen < gen_max or width < width_max:
        return Finding(
            "GC308",
            Severity.WARN,
            "PCIe link runs below its maximum under load",
            ev,
            "Reseat the card in a CPU-attached x16 slot, use a riser rated for the PCIe "
            "generation, and check the BIOS PCIe speed setting; `sudo lspci -vv` shows "
            f"LnkSta, `nvidia-smi -q -i {gpu} -d PERFORMANCE` the link while it works.",
            gpu,
        )
    return Finding("GC308", Severity.OK, "PCIe link runs at its maximum under load", ev, None, gpu)


def _slow_gpus(results: Sequence[BenchResult]) -> list[Finding]:
    groups: dict[str, list[tuple[BenchResult, float]]] = {}
    for r in results:
        if r.status not in ("ok", "gate-failed") or not r.device.startswith("cuda") or not r.result:
            continue
        sps = (r.result.get("train") or {}).get("samples_per_s")
        if isinstance(sps, (int, float)) and sps > 0:
            groups.setdefault(f"{r.gpu_name}|{r.preset}", []).append((r, float(sps)))
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        median = statistics.median(s for _, s in members)
        for r, s in members:
            if s < SLOW_RATIO * median:
                peers = ", ".join(f"{m.device} {v:,.0f}" for m, v in members if m is not r)
                out.append(
                    Finding(
                        "GC406",
                        Severity.WARN,
                        f"{_who(r)} is much slower than its peers ({s / median:.2f}x the median)",
                        (
                            f"{r.device}: {s:,.0f} samples/s",
                            f"peers: {peers} samples/s",
                            f"median {median:,.0f} samples/s, threshold {SLOW_RATIO}x",
                        ),
                        "A throttled or degraded card: check its clocks, temperature and power "
                        f"(`nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER{_smi_i(r)}`) and its "
                        f"PCIe link (`nvidia-smi -q{_smi_i(r)} | grep -A3 'Link'`), and compare "
                        "with the GPU health findings.",
                        r.gpu,
                    )
                )
    return out


def merge(findings: Iterable[Finding], from_bench: Iterable[Finding]) -> list[Finding]:
    """The diagnosis's findings plus the benchmark's, where a PCIe link judged under load
    (GC308 from the samples) replaces the idle snapshot's GC308 for the same GPU."""
    from_bench = list(from_bench)
    judged = {f.gpu for f in from_bench if f.id == "GC308" and f.gpu is not None}
    kept = [f for f in findings if not (f.id == "GC308" and f.gpu in judged)]
    return kept + from_bench


def _f1_line(ev: dict, gate: dict) -> str:
    """The dev F1 against the gate that applied; user data may have no F1 gate at all."""
    f1 = f"dev F1 {ev.get('f1', float('nan')):.4f}"
    threshold = gate.get("f1_threshold")
    if threshold is None:
        return f"{f1}, no F1 gate ({gate.get('why') or 'user data or checkpoint'})"
    why = gate.get("why")
    return f"{f1}, gate {threshold}" + (f" ({why})" if why else "")
