"""Evaluate one build (release x variant) against one machine: what fits, what does not, why.

Pure: reads the machine and the table only. The policy is in docs/recommend.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpucheck import versions
from gpucheck.compat import ArchList, CompatTable, Release, Status, Variant, parse_cc
from gpucheck.recommend.machine import Machine, MachineGpu
from gpucheck.recommend.model import Cause, DriverLevel, Kind, Problem

PLATFORM_WORDS = {
    "linux-x86_64": "Linux x86_64",
    "linux-aarch64": "Linux aarch64",
    "windows-x86_64": "Windows x86_64",
    "macos-arm64": "macOS arm64",
    "macos-x86_64": "macOS x86_64",
}

vstr = versions.nvidia
ccs = versions.cc_text


@dataclass
class Eval:
    """One build judged against one machine."""

    release: Release
    variant: Variant
    problems: list[Problem] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # facts the table cannot confirm
    assumptions: list[str] = field(default_factory=list)  # facts about the machine not known
    notes: list[str] = field(default_factory=list)
    arch_unknown: bool = False  # the table does not know which GPUs this build runs on
    driver_level: DriverLevel = DriverLevel.NA
    driver_min: tuple[int, ...] | None = None  # MVC floor (what it needs at least)
    driver_full: tuple[int, ...] | None = None
    uncovered: list[MachineGpu] = field(default_factory=list)
    covered: list[MachineGpu] = field(default_factory=list)

    def problem(self, kind: Kind, text: str, gpu: int | None = None, cause: Cause | None = None):
        self.problems.append(Problem(kind, text, gpu, cause))

    @property
    def kinds(self) -> set[Kind]:
        return {p.kind for p in self.problems}

    def of_kind(self, kind: Kind) -> list[Problem]:
        return [p for p in self.problems if p.kind is kind]

    @property
    def fits(self) -> bool:
        return not self.problems

    @property
    def confirmed(self) -> bool:
        return not self.unknown

    @property
    def usable_fallback(self) -> bool:
        """Fits, and what is unconfirmed is not whether the GPUs have kernels in it."""
        return self.fits and not self.arch_unknown

    @property
    def build(self) -> str:
        return f"{self.release.version}+{self.variant.name}"

    def rank(self) -> tuple[Any, ...]:
        v = self.variant
        if v.kind == "cuda":
            minor: tuple[int, ...] = v.cuda or (0,)
        elif v.kind == "rocm":
            minor = versions.key(versions.parse(v.name[4:]))
        else:
            minor = (0,)
        return (self.release.key, self.driver_level is DriverLevel.FULL, minor)


def driver_os(machine: Machine) -> str:
    """WSL2 runs the Windows driver: its version is compared with the Windows minimums."""
    return "windows" if machine.os == "windows" or machine.wsl else "linux"


def driver_words(machine: Machine) -> str:
    text = f"this driver is {machine.driver or 'unknown'}"
    if machine.driver_cuda:
        text += f" (CUDA {machine.driver_cuda})"
    return text


def _driver_version(machine: Machine) -> tuple[int, ...] | None:
    if not machine.driver:
        return None
    try:
        return versions.parse(machine.driver)
    except ValueError:
        return None


def driver_level(
    table: CompatTable, machine: Machine, cuda: tuple[int, int]
) -> tuple[DriverLevel, tuple[int, ...] | None, tuple[int, ...] | None]:
    """(level, MVC floor, full-feature minimum) of this driver for CUDA `cuda`."""
    os_name = driver_os(machine)
    mvc = table.mvc_driver(cuda[0], os_name)
    full, _from_linux = table.full_driver(cuda, os_name)
    d = _driver_version(machine)
    if d is not None:
        if full is not None and versions.key(d) >= versions.key(full):
            return DriverLevel.FULL, mvc, full
        if mvc is not None and versions.key(d) >= versions.key(mvc):
            return DriverLevel.MVC, mvc, full
        return DriverLevel.NONE, mvc, full
    dc = versions.major_minor(machine.driver_cuda)
    if dc is not None:
        if cuda <= dc:
            return DriverLevel.FULL, mvc, full
        if cuda[0] == dc[0]:
            return DriverLevel.MVC, mvc, full
        return DriverLevel.NONE, mvc, full
    return DriverLevel.UNKNOWN, mvc, full


def evaluate(
    table: CompatTable,
    machine: Machine,
    release: Release,
    variant: Variant,
    *,
    arch_list: ArchList | None = None,
    check_python: bool = True,
    check_platform: bool = True,
) -> Eval:
    """Judge one build: platform, Python, then the driver and kernels (CUDA) or gfx (ROCm)."""
    ev = Eval(release, variant)
    if variant.status is not Status.CONFIRMED:
        ev.unknown.append(f"that torch {release.version} has a {variant.name} build")
    if check_platform:
        _check_platform(machine, ev)
    if check_python:
        _check_python(machine, ev)
    if variant.kind == "cuda":
        _evaluate_cuda(table, machine, ev, arch_list)
    elif variant.kind == "rocm":
        _evaluate_rocm(table, machine, ev)
    return ev


def _check_platform(machine: Machine, ev: Eval) -> None:
    platform = machine.platform
    pw = PLATFORM_WORDS.get(platform, platform)
    release, variant = ev.release, ev.variant
    if platform in variant.platforms:
        pass
    elif platform in variant.unconfirmed_platforms:
        ev.unknown.append(f"that torch {release.version} has a {variant.name} wheel for {pw}")
    else:
        ev.problem(
            Kind.PLATFORM,
            f"torch {release.version} has no {variant.name} wheel for {pw}",
            cause=Cause.NO_WHEEL,
        )
    _check_glibc(machine, ev)
    if variant.kind == "rocm" and machine.wsl:
        ev.problem(
            Kind.PLATFORM,
            "ROCm wheels under WSL2 are not covered by the table",
            cause=Cause.NO_WHEEL,
        )


def _check_glibc(machine: Machine, ev: Eval) -> None:
    """Linux wheels are manylinux: pip refuses them on an older glibc."""
    need = ev.release.glibc
    have = versions.lenient(machine.glibc) if machine.os == "linux" else None
    if need is None or have is None or versions.key(have) >= versions.key(need):
        return
    ev.problem(
        Kind.PLATFORM,
        f"torch {ev.release.version} Linux wheels need glibc >= {versions.plain(need)} "
        f"(manylinux_{need[0]}_{need[1] if len(need) > 1 else 0}); this system has glibc "
        f"{machine.glibc}",
        cause=Cause.GLIBC,
    )


def _check_python(machine: Machine, ev: Eval) -> None:
    py, release = machine.python, ev.release
    if py is None:
        ev.assumptions.append("Python version unknown")
    elif py in release.python:
        pass
    elif py in release.python_unconfirmed:
        ev.unknown.append(f"that torch {release.version} has Python {py} wheels")
    else:
        ev.problem(
            Kind.PYTHON,
            f"torch {release.version} has no wheels for Python {py}",
            cause=Cause.NO_WHEEL,
        )


def _evaluate_cuda(
    table: CompatTable, machine: Machine, ev: Eval, arch_list: ArchList | None
) -> None:
    """The driver runs the build, and every NVIDIA GPU has a cubin or usable PTX in it."""
    _check_driver(table, machine, ev)
    _check_gpu_driver(table, machine, ev)
    # PTX JIT needs the full-feature driver; with the driver unknown it may or may not work
    ptx_ok: bool | None = {
        DriverLevel.FULL: True,
        DriverLevel.MVC: False,
        DriverLevel.NONE: False,
    }.get(ev.driver_level)
    gpus = [g for g in machine.nvidia_gpus() if g.compute_capability is not None]
    for g in machine.nvidia_gpus():
        if g.compute_capability is None:  # never assumed covered, whatever the build
            ev.uncovered.append(g)
            ev.problem(
                Kind.ARCH,
                f"{g.label}: compute capability unknown, so whether torch {ev.build} has "
                "kernels for it cannot be told (pass --compute-capability)",
                g.index,
                Cause.CC_UNKNOWN,
            )
    arch = arch_list or ev.variant.arch_for(machine.platform)
    if arch is None:
        if gpus:
            ev.arch_unknown = True
            ev.unknown.append(
                f"which GPU architectures torch {ev.build} has for "
                f"{PLATFORM_WORDS.get(machine.platform, machine.platform)}"
            )
        ev.covered = list(gpus)
        return
    low_sm = []
    for g in gpus:
        cc = parse_cc(g.compute_capability)
        if _check_kernels(machine, ev, arch, g, cc, ptx_ok):
            low_sm.append(g)
    _check_cudnn(table, ev, low_sm)


def _check_driver(table: CompatTable, machine: Machine, ev: Eval) -> None:
    cuda = ev.variant.cuda
    assert cuda is not None
    level, mvc, full = driver_level(table, machine, cuda)
    ev.driver_level, ev.driver_min, ev.driver_full = level, mvc, full
    os_name = driver_os(machine)
    if os_name == "windows" and full is not None and table.full_driver(cuda, os_name)[1]:
        ev.notes.append(
            f"NVIDIA gives no Windows driver minimum for CUDA {ccs(cuda)} (the toolkit no longer "
            f"bundles one): the Linux minimum of the same branch, >= {vstr(full)}, is used"
        )
    if level is DriverLevel.NONE:
        ev.problem(
            Kind.DRIVER,
            f"torch {ev.build} needs driver >= {vstr(mvc)}; {driver_words(machine)}",
            cause=Cause.DRIVER_TOO_OLD,
        )
    elif level is DriverLevel.UNKNOWN:
        ev.assumptions.append(f"driver version unknown: {ev.build} needs driver >= {vstr(mvc)}")
    elif level is DriverLevel.MVC:
        extra = (
            f"; the full feature set needs >= {vstr(full)}"
            if full
            else f"; NVIDIA publishes no {os_name.title()} full-feature minimum for CUDA {ccs(cuda)}"
        )
        ev.notes.append(
            f"driver {machine.driver or machine.driver_cuda} runs {ev.variant.name} through CUDA "
            f"minor version compatibility (>= {vstr(mvc)}){extra}"
        )


def _check_gpu_driver(table: CompatTable, machine: Machine, ev: Eval) -> None:
    """A driver older than the first CUDA that knows a GPU cannot drive that GPU at all."""
    d = _driver_version(machine)
    dc = versions.major_minor(machine.driver_cuda) if d is None else None
    if d is None and dc is None:
        return
    for g in machine.nvidia_gpus():
        if g.compute_capability is None:
            continue
        need = table.gpu_driver(parse_cc(g.compute_capability), driver_os(machine))
        if need is None:
            continue
        cuda, driver = need
        too_old = versions.key(d) < versions.key(driver) if d is not None else dc < cuda
        if too_old:
            if ev.driver_min is None or versions.key(driver) > versions.key(ev.driver_min):
                ev.driver_min = driver
            ev.problem(
                Kind.DRIVER,
                f"{g.label} needs a driver of CUDA {ccs(cuda)} or newer (>= {vstr(driver)}); "
                f"{driver_words(machine)}, which predates the GPU",
                g.index,
                Cause.DRIVER_TOO_OLD,
            )


def _check_kernels(
    machine: Machine,
    ev: Eval,
    arch: ArchList,
    g: MachineGpu,
    cc: tuple[int, int],
    ptx_ok: bool | None,
) -> bool:
    """Whether GPU `g` has code in the build (recording why not); True when it runs it."""
    fit = arch.runs_on(cc, ptx_ok)
    if fit is True:
        ev.covered.append(g)
        if arch.via_ptx_only(cc):
            ev.notes.append(
                f"{g.label} runs {ev.build} through PTX JIT (no sm_{cc[0]}{cc[1]} cubin)"
            )
        return True
    if fit is None:
        ev.covered.append(g)
        ev.assumptions.append(
            f"{g.label} needs PTX JIT, which needs driver >= {vstr(ev.driver_full)}"
        )
        return False
    if arch.via_ptx_only(cc):
        ev.covered.append(g)
        ev.problem(
            Kind.DRIVER,
            f"{g.label} has no cubin in {ev.build}; its PTX needs driver >= "
            f"{vstr(ev.driver_full)}, {driver_words(machine)}",
            g.index,
            Cause.PTX_NEEDS_DRIVER,
        )
        return False
    ev.uncovered.append(g)
    ev.problem(
        Kind.ARCH,
        f"torch {ev.build} has no kernels for {g.label}; it has {arch.describe()}",
        g.index,
        Cause.NO_KERNELS,
    )
    return False


def _check_cudnn(table: CompatTable, ev: Eval, gpus: list[MachineGpu]) -> None:
    """cuDNN refuses GPUs below its floor (9.0: SM 5.0, 9.11: SM 7.5): not covered by it.

    torch checks cuDNN against the lowest visible GPU, so one such GPU breaks cuDNN for all
    of them until it is hidden (CUDA_VISIBLE_DEVICES).
    """
    highest = max((cc for _v, cc in table.cudnn_floors or (table.cudnn_min_sm,)), default=None)
    low = [g for g in gpus if highest is not None and parse_cc(g.compute_capability) < highest]
    if not low:
        return
    variant = ev.variant
    if variant.cudnn is None:
        ev.arch_unknown = True
        ev.unknown.append(
            f"the cuDNN version of {ev.build} (cuDNN 9.0 needs SM >= 5.0, >= 9.11 needs SM >= 7.5)"
        )
        return
    floor = table.cudnn_floor(versions.parse(variant.cudnn))
    for g in low:
        if floor is None or parse_cc(g.compute_capability) >= floor:
            continue
        ev.covered.remove(g)
        ev.uncovered.append(g)
        ev.problem(
            Kind.ARCH,
            f"{ev.build} ships cuDNN {variant.cudnn}, which refuses SM < {ccs(floor)} "
            f"({g.label}; torch checks cuDNN against the lowest visible GPU)",
            g.index,
            Cause.CUDNN,
        )


def _evaluate_rocm(table: CompatTable, machine: Machine, ev: Eval) -> None:
    """ROCm builds need the exact gfx target of every AMD GPU."""
    archs = table.rocm_archs.get(ev.variant.name)
    wanted = machine.amd_archs()
    for g in machine.amd_gpus():
        if not g.gfx:
            ev.assumptions.append(f"{g.label}: gfx architecture unknown (pass --rocm-arch)")
    if not wanted:
        return
    if archs is None:
        ev.arch_unknown = True
        ev.unknown.append(f"which gfx architectures the {ev.variant.name} build has")
        return
    for gfx in wanted:
        if gfx not in archs:
            ev.problem(
                Kind.ARCH, f"torch {ev.build} has no kernels for {gfx}", cause=Cause.NO_KERNELS
            )
