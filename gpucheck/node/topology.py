"""NVML topology and NVLink state, read in a daemon thread with a timeout (NVML can hang).

Per GPU: name, bus id, maximum PCIe link, NVLink links active / present-but-down; per pair:
the common ancestor (nvmlDeviceGetTopologyCommonAncestor) or "NV<k>" when k NVLink links join
them, named as `nvidia-smi topo -m` names them. Errors are data, never raised.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

# nvmlGpuTopologyLevel_t (nvml.h) -> the names `nvidia-smi topo -m` uses.
LEVELS = {0: "SAME", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
NVLINK_MAX_LINKS = 18  # NVML_NVLINK_MAX_LINKS
_UNSUPPORTED = ("NotSupported", "FunctionNotFound", "InvalidArgument")


@dataclass
class Topology:
    gpus: list[dict[str, Any]] = field(default_factory=list)
    pairs: dict[str, str] = field(default_factory=dict)  # "i-j" -> "NV12" | "PIX" | ...
    error: str | None = None


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v).rstrip("\x00").strip()


def _err(exc: BaseException) -> str:
    name = type(exc).__name__
    return name[len("NVMLError_") :] if name.startswith("NVMLError_") else name


def bus_id(nvml_bus: str) -> str:
    """NVML's "00000000:18:00.0" -> sysfs's "0000:18:00.0"."""
    dom, _, rest = nvml_bus.lower().partition(":")
    try:
        return f"{int(dom, 16):04x}:{rest}"
    except ValueError:
        return nvml_bus.lower()


def _links(nv: Any, h: Any) -> tuple[int | None, list[int], list[str]]:
    """(active count, down link numbers, peer bus ids per active link)."""
    active, down, peers = 0, [], []
    supported = False
    for link in range(NVLINK_MAX_LINKS):
        try:
            state = nv.nvmlDeviceGetNvLinkState(h, link)
        except Exception as exc:  # noqa: BLE001 - NotSupported: no such link
            if _err(exc) in _UNSUPPORTED:
                continue
            down.append(link)
            supported = True
            continue
        supported = True
        if state:
            active += 1
            try:
                peers.append(bus_id(_text(nv.nvmlDeviceGetNvLinkRemotePciInfo(h, link).busId)))
            except Exception:  # noqa: BLE001
                pass
        else:
            down.append(link)
    return (active if supported else None), down, peers


def read_topology(nv: Any) -> Topology:
    topo = Topology()
    try:
        nv.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        topo.error = f"nvmlInit: {_err(exc)}"
        return topo
    try:
        handles, peers = [], []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            g: dict[str, Any] = {"index": i}
            for key, fn in (
                ("name", nv.nvmlDeviceGetName),
                ("pci_bus_id", lambda h: nv.nvmlDeviceGetPciInfo(h).busId),
                ("pcie_gen_max", nv.nvmlDeviceGetMaxPcieLinkGeneration),
                ("pcie_width_max", nv.nvmlDeviceGetMaxPcieLinkWidth),
            ):
                try:
                    v = fn(h)
                    g[key] = _text(v) if isinstance(v, (str, bytes)) else v
                except Exception:  # noqa: BLE001
                    pass
            if "pci_bus_id" in g:
                g["pci_bus_id"] = bus_id(g["pci_bus_id"])
            active, down, peer = _links(nv, h)
            g["nvlink_active"], g["nvlink_down"] = active, down
            handles.append(h)
            peers.append(peer)
            topo.gpus.append(g)
        for i in range(len(handles)):
            for j in range(i + 1, len(handles)):
                k = sum(1 for p in peers[i] if p == topo.gpus[j].get("pci_bus_id"))
                if k:
                    topo.pairs[f"{i}-{j}"] = f"NV{k}"
                    continue
                try:
                    level = nv.nvmlDeviceGetTopologyCommonAncestor(handles[i], handles[j])
                    topo.pairs[f"{i}-{j}"] = LEVELS.get(int(level), str(level))
                except Exception as exc:  # noqa: BLE001
                    topo.pairs[f"{i}-{j}"] = f"unknown ({_err(exc)})"
    except Exception as exc:  # noqa: BLE001
        topo.error = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            nv.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return topo


def probe_topology(timeout: float = 10.0) -> Topology:
    """read_topology(pynvml) in a daemon thread; a stalled NVML is an error, not a hang."""
    box: list[Topology] = []

    def work() -> None:
        try:
            import pynvml
        except ImportError:
            box.append(Topology(error="pynvml (nvidia-ml-py) is not installed"))
            return
        box.append(read_topology(pynvml))

    t = threading.Thread(target=work, name="gpucheck-node-nvml", daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        return Topology(error=f"NVML did not answer within {timeout:g} s")
    return box[0]
