"""Recommend the PyTorch build for a machine (pure), and say when the installed one does not fit.

    recommend(snapshot_or_machine, *, table=None, torch_spec=None) -> Recommendation
    recommend_findings(snapshot, recommendation) -> list[Finding]   (GC5xx)

The decision and the JSON contract are documented in docs/recommend.md.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gpucheck.findings import Finding, Severity
from gpucheck.recommend.engine import parse_torch_spec, recommend
from gpucheck.recommend.machine import InstalledTorch, Machine, MachineGpu, describe_gpu
from gpucheck.recommend.model import (
    ACTIONS,
    Action,
    Alternative,
    InstalledFit,
    Misfit,
    Problem,
    Recommendation,
)

# GC5xx: the installed torch does not fit this machine (docs/findings.md)
FINDING_TITLES = {
    "GC501": "installed torch needs a newer NVIDIA driver",
    "GC502": "installed torch has no kernels for this GPU",
    "GC503": "installed torch's cuDNN refuses this GPU (SM < 7.5)",
    "GC504": "installed torch is built for another GPU vendor",
    "GC505": "installed torch has no kernels for some of the GPUs",
}


# A GC5xx problem that diagnose reports under its own id is not reported twice.
SAME_AS_DIAGNOSE = {"GC501": "GC203", "GC502": "GC205", "GC504": "GC202"}


def recommend_findings(
    snapshot: Any, rec: Recommendation, *, already: Collection[str] = ()
) -> list[Finding]:
    """GC5xx findings when the installed torch does not fit; none when it fits or is absent.

    "torch not installed" and "CPU torch on a GPU machine" are diagnose's findings; their fix
    is this recommendation, so they are not repeated here. Nor is any problem whose diagnose
    twin (SAME_AS_DIAGNOSE) is among the ids in `already`.
    """
    installed = rec.installed
    if installed is None or installed.fits is not False:
        return []
    fix = rec.pip
    if rec.action == Action.UPGRADE_DRIVER and rec.driver_full_feature:
        fix = f"install NVIDIA driver >= {rec.driver_full_feature}, then: {rec.pip}"
    elif rec.action == Action.CHANGE_PYTHON and rec.python_required:
        fix = f"use Python {rec.python_required}, then: {rec.pip}"
    return [
        Finding(
            id=p.id,
            severity=Severity(p.severity),
            title=FINDING_TITLES.get(p.id, "installed torch does not fit"),
            evidence=(p.text,),
            fix=fix,
            gpu=p.gpu,
        )
        for p in installed.problems
        if SAME_AS_DIAGNOSE.get(p.id) not in already
    ]


__all__ = [
    "ACTIONS",
    "Action",
    "Alternative",
    "FINDING_TITLES",
    "InstalledFit",
    "InstalledTorch",
    "Misfit",
    "Problem",
    "Machine",
    "MachineGpu",
    "Recommendation",
    "describe_gpu",
    "parse_torch_spec",
    "recommend",
    "recommend_findings",
]
