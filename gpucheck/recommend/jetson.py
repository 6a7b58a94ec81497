"""Jetson (Tegra, JetPack): never the SBSA wheels or conda build meant for Grace servers.

pytorch.org's Linux aarch64 CUDA wheels and conda-forge's SBSA build are made for server
CUDA (arm64-sbsa); JetPack's CUDA on Nano/TX2/Xavier/Orin is a different build and those
wheels fail there (an ollama commit: "sbsa cuda libraries on a jetson system ... crashes";
pinokio#1027). NVIDIA publishes PyTorch builds per JetPack release. Thor (11.0) runs the
SBSA CUDA 13 of JetPack 7 and is not handled here.
"""

from __future__ import annotations

import re

from gpucheck import versions
from gpucheck.compat import parse_cc
from gpucheck.recommend.decide import Context
from gpucheck.recommend.installed import FitCheck
from gpucheck.recommend.model import Action, Recommendation

NVIDIA_JETSON_DOCS = (
    "https://docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-platform/index.html"
)
# The last JetPack (and its L4T) for each Jetson GPU: NVIDIA's JetPack archive.
JETPACK_FOR_CC = {
    (5, 3): ("JetPack 4", "L4T R32"),  # Nano, TX1
    (6, 2): ("JetPack 4", "L4T R32"),  # TX2
    (7, 2): ("JetPack 5", "L4T R35"),  # Xavier
    (8, 7): ("JetPack 6", "L4T R36"),  # Orin
}
JETPACK_FOR_L4T = {
    32: "JetPack 4",
    34: "JetPack 5",
    35: "JetPack 5",
    36: "JetPack 6",
    38: "JetPack 7",
}


def jetpack(ctx: Context) -> tuple[str, str]:
    """(JetPack, L4T) from /etc/nv_tegra_release when probed, else from the GPU."""
    m = re.search(r"R(\d+)\D+REVISION:\s*([\d.]+)", ctx.machine.tegra or "")
    if m:
        major = int(m.group(1))
        return JETPACK_FOR_L4T.get(major, "JetPack"), f"L4T R{major}.{m.group(2)}"
    ccs = [
        parse_cc(g.compute_capability)
        for g in ctx.machine.nvidia_gpus()
        if g.compute_capability and g.tegra
    ]
    for cc in sorted(ccs):
        if cc in JETPACK_FOR_CC:
            return JETPACK_FOR_CC[cc]
    return "JetPack", "L4T"


def jetson(ctx: Context) -> Recommendation:
    """Point to NVIDIA's PyTorch for JetPack (and conda-forge's tegra build where it fits)."""
    jp, l4t = jetpack(ctx)
    gpus = ", ".join(g.label for g in ctx.machine.nvidia_gpus()) or "the integrated GPU"
    ctx.reasons += [
        f"Jetson ({jp}, {l4t}): {gpus}",
        "pytorch.org's Linux aarch64 CUDA wheels and conda-forge's aarch64 CUDA build are made "
        "for SBSA servers (Grace); JetPack's CUDA is not SBSA, so they do not run here",
        f"install NVIDIA's PyTorch build for {jp} (it matches its CUDA and cuDNN): "
        f"{NVIDIA_JETSON_DOCS}",
    ]
    conda = _tegra_conda(ctx)
    inst = ctx.machine.torch
    if inst is not None:  # NVIDIA's JetPack builds are not in the table: not judged
        ctx.fit = FitCheck(inst.version, inst.local, None)
        ctx.reasons.insert(
            0,
            f"the installed torch {inst.version} is not judged: NVIDIA's JetPack builds are not "
            "in the table",
        )
    return ctx.bare(
        Action.INSTALL, conda=conda, conda_torch=ctx.table.conda_version if conda else None
    )


def _tegra_conda(ctx: Context) -> str | None:
    """conda-forge's tegra build: only for GPUs in its arch list and a driver of its CUDA."""
    builds = [b for b in ctx.table.conda_builds if b.tegra and b.arch is not None]
    machine = ctx.machine
    for b in builds:
        ccs = [
            parse_cc(g.compute_capability) for g in machine.nvidia_gpus() if g.compute_capability
        ]
        if not ccs or not all(b.arch.runs_on(cc, True) is True for cc in ccs):
            ctx.reasons.append(
                f"conda: conda-forge's tegra build (CUDA {versions.cc_text(b.cuda)}) has "
                f"{b.arch.describe()}, not this GPU"
            )
            continue
        dc = versions.major_minor(machine.driver_cuda)
        if dc is None or dc < b.cuda:
            ctx.reasons.append(
                f"conda: conda-forge's tegra build needs CUDA {versions.cc_text(b.cuda)} from the "
                f"driver (JetPack 6 ships CUDA 12.6; the CUDA compatibility package for Orin adds "
                f"newer); {('this one reports CUDA ' + machine.driver_cuda) if dc else 'unknown here'}"
            )
            continue
        return f"conda install -c conda-forge pytorch-gpu cuda-version={versions.cc_text(b.cuda)}"
    return None
