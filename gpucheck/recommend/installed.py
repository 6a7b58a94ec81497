"""Does the installed torch fit this machine? Its problems as typed GC5xx misfits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from gpucheck import versions
from gpucheck.compat import ArchList, CompatError, CompatTable, kind_of_variant
from gpucheck.recommend.evaluate import Eval, evaluate
from gpucheck.recommend.machine import InstalledTorch, Machine
from gpucheck.recommend.model import Cause, InstalledFit, Kind, Misfit


@dataclass
class FitCheck:
    """The installed build judged: the public fit, plus notes and its evaluation."""

    version: str
    variant: str | None
    fits: bool | None = None  # None: the table cannot say
    problems: list[Misfit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ev: Eval | None = None

    def public(self) -> InstalledFit:
        return InstalledFit(self.version, self.variant, self.fits, tuple(self.problems))


def installed_variant(table: CompatTable, machine: Machine, inst: InstalledTorch) -> str | None:
    """The variant of the installed build: its local tag, its CUDA, or PyPI's default."""
    if inst.local:
        return inst.local
    if "+" in inst.version:
        return inst.version.split("+", 1)[1]
    if inst.cuda:
        m = re.match(r"(\d+)\.(\d+)", inst.cuda)
        if m:
            return f"cu{m.group(1)}{m.group(2)}"
    if inst.hip:
        return None
    release = table.release(inst.base)
    if release is not None:
        return release.pypi_default.get(machine.platform)
    return "cpu"


def _kind(name: str | None, inst: InstalledTorch) -> str | None:
    if name:
        try:
            return kind_of_variant(name)
        except CompatError:
            return None
    return "rocm" if inst.hip else None


def installed_fit(
    table: CompatTable, machine: Machine, acc: str, spec: SpecifierSet | None
) -> FitCheck | None:
    """None without an installed torch; else whether it fits, with GC5xx misfits."""
    inst = machine.torch
    if inst is None:
        return None
    name = installed_variant(table, machine, inst)
    fit = FitCheck(inst.version, name)
    if spec is not None:
        try:
            if not spec.contains(Version(inst.base), prereleases=True):
                fit.fits = False
                fit.notes.append(f"installed torch {inst.version} does not match --torch {spec}")
                return fit
        except ValueError:
            pass
    kind = _kind(name, inst)
    if kind is None:
        fit.notes.append(f"installed torch {inst.version}: build not recognised")
        return fit
    if acc in ("cuda", "rocm", "xpu") and kind != acc:
        fit.fits = False
        # A CPU build on a GPU machine is diagnose's finding (GC202), not a GC5xx.
        if kind != "cpu" and acc != "xpu":
            gpus = "NVIDIA" if acc == "cuda" else "AMD"
            fit.problems.append(
                Misfit(
                    "GC504",
                    "error",
                    f"torch {inst.version} is a {kind.upper()} build, but this machine has "
                    f"{gpus} GPUs",
                    cause=Cause.WRONG_VENDOR,
                )
            )
        return fit
    if acc in ("cpu", "mps") and kind != "cpu":
        fit.fits = True
        fit.notes.append(
            f"torch {inst.version} is a {kind.upper()} build on a machine with no matching GPU: "
            "it runs on the CPU only, and a CPU build is far smaller"
        )
        return fit
    release = table.release(inst.base)
    if release is None:
        newest = table.releases[0]
        base = versions.lenient(inst.base) or (0,)
        if versions.key(base) > newest.key:
            fit.notes.append(
                f"installed torch {inst.version} is newer than this table (newest "
                f"{newest.version}); update gpucheck or pass --compat FILE"
            )
        else:
            fit.notes.append(f"installed torch {inst.version} is not in the table (2.0 and newer)")
        return fit
    variant = release.variant(name) if name else None
    if variant is None:
        fit.notes.append(f"the table has no {name} build of torch {release.minor}")
        return fit
    measured = ArchList.parse(" ".join(inst.arch_list)) if inst.arch_list else None
    ev = evaluate(
        table,
        machine,
        release,
        variant,
        arch_list=measured,
        check_python=False,
        check_platform=False,
    )
    fit.ev = ev
    _misfits(machine, inst, ev, fit)
    fit.notes.extend(ev.notes)
    if fit.problems:
        fit.fits = False
    elif ev.unknown:
        fit.fits = None
        fit.notes.append("cannot fully confirm the installed build: " + "; ".join(ev.unknown))
    else:
        fit.fits = True
    return fit


def _misfits(machine: Machine, inst: InstalledTorch, ev: Eval, fit: FitCheck) -> None:
    """GC501 per driver problem; per GPU without kernels GC503 (cuDNN), GC505 (some), GC502."""

    def own(text: str) -> str:
        return text.replace(f"torch {ev.build}", f"torch {inst.version}")

    driver_known = bool(machine.driver or machine.driver_cuda)
    for p in ev.of_kind(Kind.DRIVER):
        if p.cause is Cause.PTX_NEEDS_DRIVER and not driver_known:
            ev.unknown.append(own(p.text))  # cannot tell without the driver: not a finding
            continue
        fit.problems.append(Misfit("GC501", "error", own(p.text), p.gpu, p.cause))
    partial = len(ev.uncovered) < len(machine.nvidia_gpus())
    arch = ev.of_kind(Kind.ARCH)
    for g in ev.uncovered:
        mine = [p for p in arch if p.gpu == g.index]
        first = mine[0] if mine else None
        if first is not None and first.cause is Cause.CUDNN:
            fid = "GC503"
        else:
            fid = "GC505" if partial else "GC502"
        text = first.text if first else f"torch {inst.version} cannot run on {g.label}"
        fit.problems.append(
            Misfit(
                fid,
                "warn" if partial else "error",
                own(text),
                g.index,
                first.cause if first else Cause.NO_KERNELS,
            )
        )
