"""The install commands for a chosen build: pip, uv and conda-forge."""

from __future__ import annotations

from dataclasses import dataclass

from gpucheck.compat import CompatTable, parse_cc
from gpucheck.recommend.evaluate import Eval, ccs, driver_level
from gpucheck.recommend.machine import Machine
from gpucheck.recommend.model import DriverLevel


@dataclass(frozen=True)
class Commands:
    plain: bool  # the plain PyPI wheel is exactly this build
    index_url: str | None
    pip: str
    uv: str
    torchvision: str | None
    torchaudio: str | None


def commands(table: CompatTable, machine: Machine, ev: Eval) -> Commands:
    """pip and uv lines; the variant's index URL unless PyPI's default wheel is this build."""
    release, variant = ev.release, ev.variant
    plain = release.pypi_default.get(machine.platform) == variant.name
    index_url = None if plain else table.index_url_for(variant.name)
    pkgs = [f"torch=={release.version}"]
    if release.torchvision:
        pkgs.append(f"torchvision=={release.torchvision}")
    if release.torchaudio:
        pkgs.append(f"torchaudio=={release.torchaudio}")
    pip = "pip install " + " ".join(pkgs)
    uv = "uv pip install " + " ".join(pkgs)
    if index_url:
        pip += f" --index-url {index_url}"
        if variant.name in table.uv_backends:
            uv += f" --torch-backend={variant.name}"
        else:
            uv += f" --index-url {index_url}"
    return Commands(plain, index_url, pip, uv, release.torchvision, release.torchaudio)


def conda_line(table: CompatTable, machine: Machine, acc: str) -> tuple[str | None, str | None]:
    """(command, why-not) for conda-forge; never the frozen `pytorch` channel."""
    builds = [b for b in table.conda_builds if b.platform == machine.platform]
    if acc in ("cpu", "mps") or not machine.nvidia_gpus():
        if acc in ("rocm", "xpu"):
            return None, f"conda-forge has no {acc} build of pytorch in the table"
        if any(b.cuda is None for b in builds):
            return "conda install -c conda-forge pytorch-cpu", None
        return None, "the table has no conda-forge build for this platform"
    for b in sorted((b for b in builds if b.cuda), key=lambda b: b.cuda, reverse=True):
        level, _mvc, _full = driver_level(table, machine, b.cuda)
        if level is DriverLevel.NONE:
            continue
        ok = True
        for g in machine.nvidia_gpus():
            if (
                g.compute_capability
                and b.arch.runs_on(parse_cc(g.compute_capability), level is DriverLevel.FULL)
                is not True
            ):
                ok = False
        if ok:
            return (
                f"conda install -c conda-forge pytorch-gpu cuda-version={ccs(b.cuda)}",
                None,
            )
    return None, "no conda-forge CUDA build of pytorch fits this driver and these GPUs"
