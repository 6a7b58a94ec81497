"""The install commands for a chosen build: pip, uv and conda-forge."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from gpucheck import versions
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
    torchvision = release.torchvision_for(machine.python)
    if torchvision:
        pkgs.append(f"torchvision=={torchvision}")
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
    return Commands(plain, index_url, pip, uv, torchvision, release.torchaudio)


def conda_line(
    table: CompatTable, machine: Machine, acc: str, spec: SpecifierSet | None = None
) -> tuple[str | None, str | None]:
    """(command, why-not) for conda-forge; never the frozen `pytorch` channel.

    The line names the Python (`python=X.Y`), pins pytorch when --torch is given (and says
    why not when conda-forge's version is outside it), and pins `cudnn<9.11` when a GPU is
    below that cuDNN's SM 7.5 floor (conda-forge's cuDNN is otherwise unpinned).
    """
    version = table.conda_version
    if spec is not None and not spec.contains(Version(version), prereleases=True):
        return None, f"conda-forge's pytorch is {version}, outside --torch {spec}"
    py = machine.python
    if py is not None and py.endswith("t"):
        return None, "conda-forge's free-threaded pytorch builds are not in the table"
    extra = (f" python={py}" if py else "") + (f" pytorch={version}" if spec is not None else "")
    builds = [b for b in table.conda_builds if b.platform == machine.platform and not b.tegra]
    if acc in ("cpu", "mps") or not machine.nvidia_gpus():
        if acc in ("rocm", "xpu"):
            return None, f"conda-forge has no {acc} build of pytorch in the table"
        if any(b.cuda is None for b in builds):
            return f"conda install -c conda-forge pytorch-cpu{extra}", None
        return None, "the table has no conda-forge build for this platform"
    ccs_ = [parse_cc(g.compute_capability) for g in machine.nvidia_gpus() if g.compute_capability]
    if len(ccs_) < len(machine.nvidia_gpus()):
        return None, "a GPU's compute capability is unknown"
    cudnn = ""
    floor = table.cudnn_min_sm[1]
    if any(cc < floor for cc in ccs_):
        limit = versions.plain(table.cudnn_min_sm[0][:2])
        cudnn = f' "cudnn<{limit}"'
    for b in sorted((b for b in builds if b.cuda), key=lambda b: b.cuda, reverse=True):
        level, _mvc, _full = driver_level(table, machine, b.cuda)
        if level is DriverLevel.NONE:
            continue
        if all(b.arch.runs_on(cc, level is DriverLevel.FULL) is True for cc in ccs_):
            return (
                f"conda install -c conda-forge pytorch-gpu cuda-version={ccs(b.cuda)}{cudnn}{extra}",
                None,
            )
    return None, "no conda-forge CUDA build of pytorch fits this driver and these GPUs"
