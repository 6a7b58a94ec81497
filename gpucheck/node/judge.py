"""Pure rules over recorded node figures -> GC6xx findings (docs/findings.md, docs/node.md).

No I/O: every expectation comes from gpucheck/node/expected.json with its source, every fact
from a `NodeFigures` (measured by the node child, NVML and sysfs, or loaded from a file).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator

from gpucheck.findings import Finding, Severity
from gpucheck.node import expected
from gpucheck.node.figures import NodeFigures

ERROR, WARN, INFO = Severity.ERROR, Severity.WARN, Severity.INFO
NodeRule = Callable[[NodeFigures], Iterator[Finding]]
NODE_RULES: list[NodeRule] = []
DEBUG_HINT = "NCCL_DEBUG=INFO (and NCCL_DEBUG_SUBSYS=INIT,P2P,NET) shows the transport NCCL picks"
# The ACS control bits that make a switch send peer traffic up to the root complex (NCCL User
# Guide, Troubleshooting > PCI Access Control Services: "SrcValid+" in `lspci -vvv` ACSCtl).
ACS_BLOCKING = ("SrcValid", "ReqRedir", "CmpltRedir")
TRUTHY = ("1", "true", "yes", "on")


def node_rule(fn: NodeRule) -> NodeRule:
    NODE_RULES.append(fn)
    return fn


def judge(fig: NodeFigures) -> list[Finding]:
    return [f for r in NODE_RULES for f in r(fig)]


def _pair(key: str) -> tuple[int, int] | None:
    a, _, b = key.partition("-")
    try:
        return int(a), int(b)
    except ValueError:
        return None


def _who(fig: NodeFigures, index: int) -> str:
    g = next((g for g in fig.gpus if g.index == index), None)
    name = f" ({g.name})" if g and g.name else ""
    return f"GPU {index}{name}" + (f" on {fig.host}" if fig.host else "")


@node_rule
def nccl_env_degrades(fig: NodeFigures) -> Iterator[Finding]:
    """GC601: NCCL env vars that silently turn off a transport."""
    bad = []
    for var, why in (
        ("NCCL_P2P_DISABLE", "GPU-to-GPU traffic goes through host memory"),
        ("NCCL_SHM_DISABLE", "intra-node traffic without P2P falls back to sockets"),
        ("NCCL_IB_DISABLE", "traffic between nodes falls back to TCP sockets"),
    ):
        if fig.env.get(var, "").strip().lower() in TRUTHY:
            bad.append((var, why))
    level = fig.env.get("NCCL_P2P_LEVEL", "").strip().upper()
    if level in ("LOC", "0"):
        bad.append(("NCCL_P2P_LEVEL", "LOC disables P2P between all GPUs"))
    if not bad:
        return
    yield Finding(
        "GC601",
        WARN,
        "NCCL environment variables turn off a fast transport: " + ", ".join(v for v, _ in bad),
        tuple(f"{v}={fig.env.get(v)}: {why}" for v, why in bad),
        f"Unset them unless a known bug needs them: `unset {' '.join(v for v, _ in bad)}` "
        f"(check shell profiles, module files and the job script). {DEBUG_HINT}.",
    )


def socket_ifname_matches(value: str, interfaces: tuple[str, ...]) -> bool:
    """Whether NCCL_SOCKET_IFNAME selects any interface (NCCL User Guide, Environment
    Variables: comma-separated prefixes; a leading ^ excludes, a leading = matches exactly)."""
    value = value.strip()
    exclude = value.startswith("^")
    value = value.lstrip("^")
    exact = value.startswith("=")
    value = value.lstrip("=")
    names = [n.strip() for n in value.split(",") if n.strip()]

    def hit(iface: str) -> bool:
        return any(iface == n if exact else iface.startswith(n) for n in names)

    if exclude:
        return any(not hit(i) for i in interfaces)
    return any(hit(i) for i in interfaces)


@node_rule
def socket_ifname_wrong(fig: NodeFigures) -> Iterator[Finding]:
    """GC602: NCCL_SOCKET_IFNAME selects no interface of this host."""
    value = fig.env.get("NCCL_SOCKET_IFNAME")
    if not value or not fig.interfaces or socket_ifname_matches(value, fig.interfaces):
        return
    yield Finding(
        "GC602",
        ERROR,
        f"NCCL_SOCKET_IFNAME={value} matches no network interface on this host",
        (f"interfaces: {', '.join(fig.interfaces)}",),
        "NCCL fails to initialise ('no socket interface found') or picks nothing: set it to a "
        "prefix of an interface that exists (`ip -brief link`), e.g. "
        f"`export NCCL_SOCKET_IFNAME={_best_iface(fig.interfaces)}`, or unset it. "
        "NCCL_DEBUG=INFO prints the interface NCCL uses.",
    )


def _best_iface(interfaces: tuple[str, ...]) -> str:
    real = [i for i in interfaces if i != "lo" and not i.startswith(("docker", "veth", "virbr"))]
    return (real or list(interfaces))[0]


@node_rule
def acs_enabled(fig: NodeFigures) -> Iterator[Finding]:
    """GC603: PCIe ACS redirects peer traffic on bridges above the GPUs."""
    if len(fig.gpus) < 2:
        return
    hits = [b for b in fig.bridges if set(b.acs_ctl) & set(ACS_BLOCKING) and b.gpus]
    if not hits:
        return
    yield Finding(
        "GC603",
        WARN,
        f"PCIe ACS is on for {len(hits)} bridge(s) above the GPUs: P2P goes through the root "
        "complex, slowly, or hangs",
        tuple(
            f"bridge {b.bdf}: ACSCtl {' '.join(f + '+' for f in b.acs_ctl)}; GPUs below: "
            + ", ".join(b.gpus)
            for b in hits
        ),
        "Disable ACS in the BIOS (often 'ACS' or 'PCIe ACS control'), or until the next boot "
        "for each bridge: "
        + "; ".join(f"`sudo setpci -s {b.bdf} ECAP_ACS+0x6.w=0000`" for b in hits[:4])
        + " (NCCL User Guide, Troubleshooting > PCI Access Control Services). Virtual machines "
        "need ACS for device assignment: there, ask the provider instead.",
    )


@node_rule
def iommu_translating(fig: NodeFigures) -> Iterator[Finding]:
    """GC604: IOMMU in translation mode for the GPUs (P2P slow or hanging)."""
    if len(fig.gpus) < 2:
        return
    dma = {bus: mode for bus, mode in fig.iommu_modes.items() if mode.upper().startswith("DMA")}
    if not dma:
        return
    yield Finding(
        "GC604",
        WARN,
        "The IOMMU translates the GPUs' DMA: peer-to-peer transfers may be slow or hang",
        tuple(f"{bus}: iommu_group type {mode}" for bus, mode in sorted(dma.items())),
        "On bare metal boot with the IOMMU in pass-through mode: add `iommu=pt` (Intel also "
        "`intel_iommu=on`, or `amd_iommu=on` on AMD) to GRUB_CMDLINE_LINUX in /etc/default/grub, "
        "then `sudo update-grub` and reboot (NCCL User Guide, Troubleshooting > IOMMU).",
    )


@node_rule
def nvlink_down(fig: NodeFigures) -> Iterator[Finding]:
    """GC605: NVLink links down, or fewer active links than the model has."""
    for g in fig.gpus:
        exp = expected.nvlink_links(g.name)
        if g.nvlink_down:
            yield Finding(
                "GC605",
                ERROR,
                f"{len(g.nvlink_down)} NVLink link(s) down on {_who(fig, g.index)}",
                (
                    f"inactive links: {', '.join(map(str, g.nvlink_down))}",
                    f"active links: {g.nvlink_active}",
                    *([f"the model has {exp[0]} links ({exp[1]})"] if exp else []),
                ),
                f"Traffic over the missing links falls back to slower paths or NCCL hangs: "
                f"`nvidia-smi nvlink --status -i {g.index}` and `nvidia-smi nvlink -e -i "
                f"{g.index}` (error counters); on NVSwitch systems check the fabric manager "
                "(`systemctl status nvidia-fabricmanager`); a reset (`sudo nvidia-smi -r -i "
                f"{g.index}`) or reboot, else a hardware ticket.",
                g.index,
            )
        elif exp and g.nvlink_active is not None and g.nvlink_active < exp[0]:
            yield Finding(
                "GC605",
                WARN,
                f"{_who(fig, g.index)} has {g.nvlink_active} active NVLink links; the model "
                f"has {exp[0]}",
                (f"active links: {g.nvlink_active}", f"expected: {exp[0]} ({exp[1]})"),
                f"`nvidia-smi nvlink --status -i {g.index}`; on NVSwitch systems the fabric "
                "manager must run (`systemctl status nvidia-fabricmanager`) and match the driver "
                "version.",
                g.index,
            )


@node_rule
def device_order(fig: NodeFigures) -> Iterator[Finding]:
    """GC606: mixed GPU models without CUDA_DEVICE_ORDER=PCI_BUS_ID."""
    names = {g.name for g in fig.gpus if g.name}
    if len(names) < 2 or fig.env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return
    yield Finding(
        "GC606",
        WARN,
        "Mixed GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA and nvidia-smi number "
        "the GPUs differently",
        (
            f"models: {', '.join(sorted(names))}",
            f"CUDA_DEVICE_ORDER={fig.env.get('CUDA_DEVICE_ORDER', '(unset: FASTEST_FIRST)')}",
        ),
        "`export CUDA_DEVICE_ORDER=PCI_BUS_ID` so that cuda:N and CUDA_VISIBLE_DEVICES=N name "
        "the GPU nvidia-smi calls N.",
    )


@node_rule
def nccl_version(fig: NodeFigures) -> Iterator[Finding]:
    """GC607: the NCCL torch ships (for bug reports), or none on a multi-GPU CUDA torch."""
    if len(fig.gpus) < 2 or not fig.cuda_available:
        return
    if fig.nccl_version:
        yield Finding(
            "GC607",
            INFO,
            f"torch {fig.torch_version or ''} ships NCCL {fig.nccl_version}".replace("  ", " "),
            (f"NCCL {fig.nccl_version}",),
            "Quote it in NCCL bug reports; a newer NCCL comes with a newer torch "
            "(`gpucheck recommend`).",
        )
    elif fig.child_status == "ok":
        yield Finding(
            "GC607",
            WARN,
            "This CUDA torch has no NCCL: multi-GPU training cannot use the nccl backend",
            (f"torch {fig.torch_version}", "torch.cuda.nccl.version() unavailable"),
            "Install a torch wheel built with NCCL (the PyPI CUDA wheels are): "
            "`gpucheck recommend` prints the command.",
        )


@node_rule
def shm_small(fig: NodeFigures) -> Iterator[Finding]:
    """GC608: /dev/shm too small for NCCL's shared-memory transport (multi-GPU hosts)."""
    shm_min = expected.table()["shm"]
    if len(fig.gpus) < 2 or fig.shm_bytes is None or fig.shm_bytes >= shm_min["min_bytes"]:
        return
    if fig.in_container:  # GC112 reports a small /dev/shm in a container already
        return
    yield Finding(
        "GC608",
        WARN,
        f"/dev/shm is only {fig.shm_bytes / 2**20:.0f} MiB on a {len(fig.gpus)}-GPU host",
        (
            f"/dev/shm: {fig.shm_bytes} bytes",
            f"at least {shm_min['min_bytes']} ({shm_min['source']})",
        ),
        "NCCL fails with 'failed to extend /dev/shm' or a bus error: `sudo mount -o "
        "remount,size=8G /dev/shm` (and RemoveIPC=no in /etc/systemd/logind.conf).",
    )


@node_rule
def p2p_matrix(fig: NodeFigures) -> Iterator[Finding]:
    """GC609: P2P unavailable between GPUs, or a P2P copy that failed."""
    n = len(fig.p2p)
    if n >= 2:
        missing = [(i, j) for i in range(n) for j in range(n) if i < j and fig.p2p[i][j] is False]
        if missing:
            names = {g.name for g in fig.gpus}
            by_design = bool(names) and all(expected.p2p_absent_by_design(x) for x in names)
            src = expected.table()["p2p_by_design_absent"]["source"]
            yield Finding(
                "GC609",
                INFO if by_design else WARN,
                f"No P2P access between {len(missing)} GPU pair(s)"
                + (": expected for these GeForce boards" if by_design else ""),
                (
                    "pairs without P2P: " + ", ".join(f"{i}-{j}" for i, j in missing[:12]),
                    *([src] if by_design else []),
                ),
                "NCCL falls back to shared memory through the host, which is slower but works."
                if by_design
                else "Check PCIe ACS and the IOMMU (findings GC603, GC604), the topology "
                "(`nvidia-smi topo -m`) and `nvidia-smi topo -p2p r`. " + DEBUG_HINT + ".",
            )
    for key, err in sorted(fig.p2p_copy_errors.items()):
        pair = _pair(key)
        yield Finding(
            "GC609",
            ERROR,
            f"A peer-to-peer copy between GPUs {key} failed",
            (err,),
            "A multi-GPU job over this pair will fail or hang: check PCIe ACS and the IOMMU "
            "(GC603, GC604), then `nvidia-smi topo -p2p r`; as a stopgap `NCCL_P2P_DISABLE=1` "
            "avoids P2P (slower).",
            pair[0] if pair else None,
        )


def _judged_allreduce(fig: NodeFigures):
    if not fig.allreduce:
        return None
    floor = expected.table()["allreduce"]["judged_from_bytes"]
    big = [a for a in fig.allreduce if a.bytes >= floor]
    return max(big or fig.allreduce, key=lambda a: a.bytes)


@node_rule
def allreduce_slow(fig: NodeFigures) -> Iterator[Finding]:
    """GC610: all_reduce bus bandwidth below what the topology should give."""
    n = len(fig.gpus)
    if fig.allreduce_error and n >= 2:
        yield Finding(
            "GC610",
            ERROR,
            f"all_reduce over the {n} local GPUs failed",
            (fig.allreduce_error,),
            f"Multi-GPU training will fail the same way: rerun with {DEBUG_HINT}.",
        )
        return
    a = _judged_allreduce(fig)
    if a is None or n < 2:
        return
    conf = expected.table()["allreduce"]
    names = {g.name for g in fig.gpus}
    all_nvlink = bool(fig.topology) and all(v.startswith("NV") for v in fig.topology.values())
    exp = None
    if all_nvlink and len(names) == 1:
        got = expected.allreduce_nvlink(next(iter(names)), n)
        if got:
            exp = (got[0] * conf["warn_below_fraction"], f"{got[0]:.0f} GB/s healthy ({got[1]})")
    elif not all_nvlink and all(all(x is not False for x in row) for row in fig.p2p) and fig.p2p:
        links = [expected.pcie_link_gbps(g.pcie_gen_max, g.pcie_width_max) for g in fig.gpus]
        if links and all(links):
            link = min(links)
            exp = (
                link * conf["pcie_fraction_of_link"],
                f"PCIe link {link:.1f} GB/s ({conf['pcie_source']})",
            )
    if exp is None or a.busbw_gbps >= exp[0]:
        return
    yield Finding(
        "GC610",
        WARN,
        f"all_reduce bus bandwidth {a.busbw_gbps:.1f} GB/s over {n} GPUs is below "
        f"{exp[0]:.1f} GB/s",
        (
            f"{a.bytes / 2**20:.0f} MiB: algbw {a.algbw_gbps:.1f} GB/s, busbw {a.busbw_gbps:.1f} GB/s "
            f"({conf['source']})",
            f"expected: {exp[1]}",
            "topology: " + ", ".join(f"{k} {v}" for k, v in sorted(fig.topology.items())[:8]),
        ),
        f"Look for a transport NCCL fell back to: {DEBUG_HINT}; check GC601/GC603/GC604/GC605 "
        "and the PCIe links (GC308).",
    )


@node_rule
def host_bandwidth(fig: NodeFigures) -> Iterator[Finding]:
    """GC611: pinned host<->device bandwidth below the GPU's PCIe link."""
    conf = expected.table()["pcie"]
    for g in fig.gpus:
        link = expected.pcie_link_gbps(g.pcie_gen_max, g.pcie_width_max)
        figures = [x for x in (g.h2d_gbps, g.d2h_gbps) if x is not None]
        if link is None or not figures or min(figures) >= conf["warn_below_fraction"] * link:
            continue
        yield Finding(
            "GC611",
            WARN,
            f"Host<->device bandwidth of {_who(fig, g.index)} is {min(figures):.1f} GB/s, "
            f"below {conf['warn_below_fraction']:.0%} of its Gen{g.pcie_gen_max} "
            f"x{g.pcie_width_max} link ({link:.1f} GB/s)",
            (
                f"pinned H2D {g.h2d_gbps} GB/s, D2H {g.d2h_gbps} GB/s (measured under load)",
                f"healthy: ~{conf['healthy_fraction']:.0%} of the link ({conf['source']})",
            ),
            f"A link trained below its maximum or a card in a slower slot: `nvidia-smi -q -i "
            f"{g.index} -d PCIE` (and `sudo lspci -vv -s {g.pci_bus_id or 'BUS'} | grep LnkSta`); "
            "reseat the card or check the riser; a NUMA-remote copy is slower too (`nvidia-smi "
            "topo -m` shows the CPU affinity).",
            g.index,
        )


@node_rule
def matmul_low(fig: NodeFigures) -> Iterator[Finding]:
    """GC612 below the datasheet peak; GC613 more than 10% below the node's median."""
    conf = expected.table()["matmul"]
    for g in fig.gpus:
        if g.matmul_tflops is None or not g.matmul_dtype:
            continue
        peak = expected.matmul_peak(g.name, g.matmul_dtype)
        if peak and g.matmul_tflops < conf["warn_below_share"] * peak[0]:
            yield Finding(
                "GC612",
                WARN,
                f"{_who(fig, g.index)} reaches {g.matmul_tflops:.0f} {g.matmul_dtype} TFLOP/s, "
                f"{g.matmul_tflops / peak[0]:.0%} of its {peak[0]:.0f} peak",
                (f"datasheet peak: {peak[1]}", f"healthy: 80-86% ({conf['source']})"),
                "Throttled or capped clocks: `nvidia-smi -q -d PERFORMANCE,CLOCK,POWER -i "
                f"{g.index}`; see GC306/GC307.",
                g.index,
            )
    rated = [g for g in fig.gpus if g.matmul_tflops]
    if len(rated) < 2:
        return
    median = statistics.median(g.matmul_tflops for g in rated)
    tol = conf["node_median_tolerance"]
    for g in rated:
        if g.matmul_tflops < (1 - tol) * median:
            yield Finding(
                "GC613",
                WARN,
                f"{_who(fig, g.index)} is {1 - g.matmul_tflops / median:.0%} slower at matmul than "
                "the node's median",
                (
                    f"GPU {g.index}: {g.matmul_tflops:.1f} TFLOP/s; median {median:.1f}",
                    f"tolerance {tol:.0%} ({conf['tolerance_source']})",
                ),
                "A throttled or degraded card: `nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER -i "
                f"{g.index}`; compare with GC306/GC307 and its PCIe link (GC308).",
                g.index,
            )


@node_rule
def child_failed(fig: NodeFigures) -> Iterator[Finding]:
    """GC614: the node child hung or crashed (a multi-GPU job would too)."""
    if fig.child_status not in ("timeout", "crash"):
        return
    hang = fig.child_status == "timeout"
    yield Finding(
        "GC614",
        ERROR,
        "The interconnect check "
        + ("hung" if hang else "crashed")
        + (f" on {fig.host}" if fig.host else ""),
        tuple(x for x in (fig.child_error,) if x),
        "A P2P copy or NCCL all_reduce that hangs here hangs a training job too: check GC603/"
        f"GC604, then rerun with {DEBUG_HINT} (`NCCL_DEBUG=INFO gpucheck node`).",
    )
