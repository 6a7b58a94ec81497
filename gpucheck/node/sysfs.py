"""Host facts for the interconnect rules: PCIe bridges and their ACS bits, IOMMU mode, network
interfaces, /dev/shm, NCCL env. Reads sysfs under a root (tests point it at a fake tree) and
`lspci -vvv` with a timeout; unreadable is data (None), never an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from gpucheck import proc
from gpucheck.probe._util import read_text, rooted

BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
ENV_PREFIXES = ("NCCL_", "CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES", "TORCH_NCCL_")


def nccl_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES)}


def interfaces(root: str = "/") -> tuple[str, ...]:
    try:
        return tuple(sorted(os.listdir(rooted(root, "/sys/class/net"))))
    except OSError:
        return ()


def shm_bytes(root: str = "/") -> int | None:
    try:
        st = os.statvfs(rooted(root, "/dev/shm"))
    except OSError:
        return None
    return st.f_frsize * st.f_blocks


def upstream_bridges(gpu_bdf: str, root: str = "/") -> list[str]:
    """The PCI bridges between the root complex and the GPU, top first (from the sysfs path)."""
    try:
        real = os.path.realpath(rooted(root, f"/sys/bus/pci/devices/{gpu_bdf}"))
    except OSError:
        return []
    parts = [p for p in real.split(os.sep) if BDF.match(p)]
    return parts[:-1] if parts and parts[-1] == gpu_bdf else parts


def iommu_mode(gpu_bdf: str, root: str = "/") -> str | None:
    """The GPU's IOMMU group type: "DMA"/"DMA-FQ" (translating), "identity" (pass-through)."""
    text = read_text(rooted(root, f"/sys/bus/pci/devices/{gpu_bdf}/iommu_group/type"))
    return text.strip() if text and text.strip() else None


_ACSCTL = re.compile(r"ACSCtl:\s*(.*)")


def parse_acsctl(lspci_text: str) -> tuple[str, ...] | None:
    """The ACSCtl flags set ("+") in `lspci -vvv -s BDF` output; None without an ACSCtl line
    (no ACS capability, or capabilities hidden because we are not root)."""
    m = _ACSCTL.search(lspci_text)
    if not m:
        return None
    return tuple(tok[:-1] for tok in m.group(1).split() if tok.endswith("+"))


def bridges_above(
    gpu_bdfs: list[str], root: str = "/", lspci: str = "lspci", timeout: float = 5.0
) -> tuple[list[dict], bool | None]:
    """([{bdf, acs_ctl, gpus}], readable): the bridges above the GPUs with their ACS bits."""
    below: dict[str, list[str]] = {}
    for gpu in gpu_bdfs:
        for b in upstream_bridges(gpu, root):
            below.setdefault(b, []).append(gpu)
    out, readable = [], None
    for b, gpus in sorted(below.items()):
        res = proc.run([lspci, "-vvv", "-s", b], timeout=timeout)
        if res.returncode != 0:
            continue
        flags = parse_acsctl(res.stdout)
        if "Capabilities: <access denied>" in res.stdout:
            readable = False if readable is None else readable
            continue
        readable = True
        out.append({"bdf": b, "acs_ctl": list(flags or ()), "gpus": gpus})
    return out, readable
