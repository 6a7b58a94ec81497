"""The expected figures (gpucheck/node/expected.json): healthy bandwidths and counts, with sources.

Loaded once; every threshold the judging rules use comes from here, so a reader can see where
each expectation comes from, and one table is updated when a new GPU ships.
"""

from __future__ import annotations

import functools
import json
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected.json")


@functools.cache
def table() -> dict:
    with open(PATH, encoding="utf-8") as fh:
        return json.load(fh)


def _norm(name: str | None) -> str:
    return " ".join((name or "").lower().split())


def pcie_link_gbps(gen: int | None, width: int | None) -> float | None:
    """Theoretical one-direction bandwidth of a PCIe link, GB/s."""
    if not gen or not width:
        return None
    per_lane = table()["pcie"]["gbps_per_lane"].get(str(gen))
    return per_lane * width if per_lane else None


def nvlink_links(name: str | None) -> tuple[int, str] | None:
    """(links the model has, source) for NVLink GPUs on record."""
    for row in table()["nvlink_links"]:
        if _norm(name) in {_norm(n) for n in row["names"]}:
            return row["links"], row["source"]
    return None


def allreduce_nvlink(name: str | None, gpus: int) -> tuple[float, str] | None:
    """(healthy busbw GB/s, source) of an all_reduce over `gpus` NVLink GPUs of this model."""
    for row in table()["allreduce"]["nvlink"]:
        if row["gpus"] == gpus and _norm(name) in {_norm(n) for n in row["names"]}:
            return float(row["busbw_gbps"]), row["source"]
    return None


def p2p_absent_by_design(name: str | None) -> bool:
    names = table()["p2p_by_design_absent"]["names"]
    return _norm(name) in {_norm(n) for n in names}


def matmul_peak(name: str | None, dtype: str) -> tuple[float, str] | None:
    """(dense datasheet TFLOP/s, source) from finetune's peak table (one table, not two)."""
    try:
        from finetune.perf import find_peak  # pure data, no torch
    except ImportError:
        return None
    peak = find_peak(name)
    value = getattr(peak, dtype, None) if peak else None
    return (float(value), peak.source) if value else None
