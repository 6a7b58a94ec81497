"""The decision: the newest build that fits, the installed build, and the reasons for both.

Policy (docs/recommend.md): a build is a candidate only if the driver can run it, every GPU
has a cubin or usable PTX in it, and the Python and the OS/arch have that wheel. Among
candidates the newest torch release wins; within it the variant whose full-feature driver
minimum is met, then the newest CUDA. Facts the table marks unconfirmed are used only when
no confirmed build fits, and then with a warning. When nothing fits, `fallbacks` says the
smallest change that makes something fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from gpucheck import versions
from gpucheck.compat import CompatTable, parse_cc
from gpucheck.recommend.commands import Commands, commands, conda_line
from gpucheck.recommend.evaluate import (
    PLATFORM_WORDS,
    Eval,
    ccs,
    driver_words,
    evaluate,
    vstr,
)
from gpucheck.recommend.installed import FitCheck, installed_fit
from gpucheck.recommend.machine import Machine
from gpucheck.recommend.model import (
    Action,
    Alternative,
    Cause,
    DriverLevel,
    InstalledFit,
    Kind,
    Recommendation,
)


@dataclass
class Context:
    """What every step of one decision shares: the inputs and the lines said so far."""

    table: CompatTable
    machine: Machine
    spec: SpecifierSet | None
    acc: str  # "cuda" | "rocm" | "xpu" | "mps" | "cpu"
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fit: FitCheck | None = None

    @property
    def pw(self) -> str:
        return PLATFORM_WORDS.get(self.machine.platform, self.machine.platform)

    @property
    def installed(self) -> InstalledFit | None:
        return self.fit.public() if self.fit else None

    def bare(self, action: Action, **fields) -> Recommendation:
        """A Recommendation without a build (nothing to install, or nothing fits)."""
        fields.setdefault("reasons", tuple(dict.fromkeys(self.reasons)))
        fields.setdefault("warnings", tuple(dict.fromkeys(self.warnings)))
        fields.setdefault("installed", self.installed)
        return Recommendation(
            action=action, machine=self.machine, table=self.table.origin, **fields
        )

    def chosen(
        self,
        ev: Eval,
        cmds: Commands,
        conda: str | None,
        *,
        action: Action,
        reasons: Sequence[str],
        warnings: Sequence[str],
        alternatives: Sequence[Alternative] = (),
        python_required: str | None = None,
    ) -> Recommendation:
        """The Recommendation for one chosen build (reasons and warnings without repeats)."""
        return Recommendation(
            action=action,
            variant=ev.variant.name,
            torch=ev.release.version,
            index_url=cmds.index_url,
            pip=cmds.pip,
            uv=cmds.uv,
            conda=conda,
            torchvision=cmds.torchvision,
            torchaudio=cmds.torchaudio,
            reasons=tuple(dict.fromkeys(reasons)),
            warnings=tuple(dict.fromkeys(warnings)),
            build=ev.build,
            driver_required=vstr(ev.driver_min) if ev.driver_min else None,
            driver_full_feature=vstr(ev.driver_full) if ev.driver_full else None,
            python_required=python_required,
            conda_torch=self.table.conda_version if conda else None,
            installed=self.installed,
            alternatives=tuple(alternatives),
            machine=self.machine,
            table=self.table.origin,
        )


def accelerator(machine: Machine) -> str:
    """Which kind of build the machine wants: NVIDIA, then AMD, Intel, macOS, the CPU."""
    if machine.os == "macos":
        return "mps" if machine.platform == "macos-arm64" else "cpu"
    if machine.nvidia_gpus():
        return "cuda"
    if machine.amd_archs() or machine.amd_gpus():
        return "rocm"
    if machine.intel_gpus():
        return "xpu"
    return "cpu"


def evaluate_all(
    table: CompatTable, machine: Machine, spec: SpecifierSet | None, acc: str
) -> list[Eval]:
    """Every build of the accelerator's kind within `spec`, best ranked first."""
    kinds = {"cuda": ("cuda",), "rocm": ("rocm",), "xpu": ("xpu",)}.get(acc, ("cpu",))
    out = []
    for release in table.releases:
        if spec is not None and not spec.contains(Version(release.version), prereleases=True):
            continue
        for variant in release.variants:
            if variant.kind in kinds:
                out.append(evaluate(table, machine, release, variant))
    out.sort(key=lambda e: e.rank(), reverse=True)
    return out


def _context_lines(ctx: Context) -> None:
    """What is on the machine besides the accelerator we pick, said once up front."""
    m, acc = ctx.machine, ctx.acc
    if acc == "cuda" and (m.amd_archs() or m.intel_gpus()):
        ctx.warnings.append(
            "NVIDIA and other GPUs in one machine: recommending for the NVIDIA GPUs only"
        )
    if m.os == "macos" and m.nvidia_gpus():
        ctx.warnings.append("there is no CUDA on macOS: NVIDIA GPUs cannot be used by torch there")
    if m.wsl and acc == "cuda":
        ctx.reasons.append(
            "WSL2: Linux wheels, run by the Windows driver (its version is compared with NVIDIA's "
            "Windows minimums); do not install a Linux NVIDIA driver inside WSL"
        )
    if acc == "xpu":
        ctx.warnings.append(
            "which Intel GPUs the xpu wheels support is not confirmed by the table; integrated "
            "GPUs may not be"
        )
    if acc == "rocm":
        ctx.warnings.append("ROCm wheels need the amdgpu kernel driver; its version is not checked")


def choose(evals: list[Eval]) -> tuple[Eval | None, bool]:
    """(the best confirmed build that fits, False), else (the fallback, True), else (None, _)."""
    chosen = next((e for e in evals if e.fits and e.confirmed), None)
    if chosen is not None:
        return chosen, False
    usable = [e for e in evals if e.usable_fallback]  # fewest unknowns, then newest
    if not usable:
        return None, False
    return min(usable, key=lambda e: len(e.unknown)), True


def decide(table: CompatTable, machine: Machine, spec: SpecifierSet | None) -> Recommendation:
    """The recommendation for `machine` (see the module docstring for the policy)."""
    ctx = Context(table, machine, spec, accelerator(machine))
    if machine.is_tegra and machine.os == "linux":
        from gpucheck.recommend.jetson import jetson

        return jetson(ctx)
    if machine.platform not in PLATFORM_WORDS:
        ctx.reasons.append(f"no torch wheels for {machine.os} {machine.arch} in the table")
        return ctx.bare(Action.UNSUPPORTED)
    _context_lines(ctx)
    evals = evaluate_all(table, machine, spec, ctx.acc)
    ctx.fit = installed_fit(table, machine, ctx.acc, spec)
    chosen, fallback = choose(evals)
    if chosen is None:
        from gpucheck.recommend.fallbacks import nothing_fits

        return nothing_fits(ctx, evals)
    _better_elsewhere(ctx, evals, chosen, fallback)
    ctx.reasons.extend(why(ctx, chosen, machine))
    ctx.reasons.extend(chosen.notes)
    ctx.warnings.extend(dict.fromkeys(chosen.assumptions))
    cmds = commands(table, machine, chosen)
    conda, conda_why = conda_line(table, machine, ctx.acc, ctx.spec)
    if conda is None and conda_why:
        ctx.reasons.append(f"conda: {conda_why}")
    if ctx.fit is not None:
        return _with_installed(ctx, ctx.fit, chosen, cmds, conda)
    return ctx.chosen(
        chosen, cmds, conda, action=Action.INSTALL, reasons=ctx.reasons, warnings=ctx.warnings
    )


def _better_elsewhere(ctx: Context, evals: list[Eval], chosen: Eval, fallback: bool) -> None:
    """Warnings: unconfirmed facts used; a newer build that a driver or Python change gives."""
    if fallback:
        ctx.warnings.append(
            "no build confirmed by the table fits; this one depends on unconfirmed facts: "
            + "; ".join(chosen.unknown)
        )
    newer_unknown = [
        e for e in evals if e.fits and not e.confirmed and e.release.key > chosen.release.key
    ]
    if newer_unknown and not fallback:
        e = newer_unknown[0]
        ctx.warnings.append(
            f"torch {e.release.version} may fit too, but the table cannot confirm "
            + "; ".join(e.unknown[:2])
        )
    for kind in (Kind.DRIVER, Kind.PYTHON, Kind.PLATFORM):
        better = next(
            (
                e
                for e in evals
                if e.kinds == {kind}
                and e.confirmed
                and e.release.key > chosen.release.key
                and (kind is not Kind.PLATFORM or all(p.cause is Cause.GLIBC for p in e.problems))
            ),
            None,
        )
        if better is None:
            continue
        if kind is Kind.PLATFORM:
            ctx.warnings.append(
                f"glibc {ctx.machine.glibc} is too old for newer wheels: a distribution with glibc "
                f">= {versions.plain(better.release.glibc or ())} would allow torch {better.build}"
            )
        elif kind is Kind.DRIVER:
            ctx.warnings.append(
                f"driver >= {vstr(better.driver_min)} would allow torch {better.build} "
                f"({driver_words(ctx.machine)})"
            )
        else:
            from gpucheck.recommend.fallbacks import py_range

            ctx.warnings.append(
                f"Python {py_range(better.release.python)} would allow torch {better.build} "
                f"(this is Python {ctx.machine.python})"
            )


def _with_installed(
    ctx: Context, fit: FitCheck, chosen: Eval, cmds: Commands, conda: str | None
) -> Recommendation:
    """Nothing to do when the installed build fits (the newest one as an alternative)."""
    if fit.fits is False or fit.problems:
        reasons = [p.text for p in reversed(fit.problems)] + ctx.reasons
        return ctx.chosen(
            chosen, cmds, conda, action=Action.INSTALL, reasons=reasons, warnings=ctx.warnings
        )
    ctx.warnings.extend(fit.notes)
    ctx.reasons.insert(
        0, f"the installed torch {fit.version} already fits this machine; nothing to do"
    )
    if fit.ev is None:  # installed build not in the table: describe it as installed
        return ctx.bare(Action.NONE, variant=fit.variant, torch=fit.version)
    alternatives = []
    if fit.ev.build != chosen.build:
        alternatives.append(
            Alternative(
                chosen.release.version, chosen.variant.name, "newest build that fits", cmds.pip
            )
        )
        ctx.reasons.append(f"newest build that fits: {chosen.build} ({cmds.pip})")
        chosen, cmds = fit.ev, commands(ctx.table, ctx.machine, fit.ev)
    return ctx.chosen(
        chosen,
        cmds,
        conda,
        action=Action.NONE,
        reasons=ctx.reasons,
        warnings=ctx.warnings,
        alternatives=alternatives,
    )


def why(ctx: Context, ev: Eval, machine: Machine) -> list[str]:
    """The reasons for a chosen build: what it fits, the driver, the index URL, torchaudio."""
    acc, pw = ctx.acc, ctx.pw
    out = []
    release, variant = ev.release, ev.variant
    py = f"Python {machine.python}" if machine.python else "this Python"
    if acc == "cuda":
        gpus = machine.nvidia_gpus()
        names = ", ".join(g.label for g in gpus)
        out.append(f"torch {ev.build} is the newest build that fits {names} on {pw} with {py}")
        if ev.driver_level is DriverLevel.FULL:
            out.append(
                f"driver {machine.driver or machine.driver_cuda} meets the full-feature minimum "
                f"of CUDA {ccs(variant.cuda)} (>= {vstr(ev.driver_full)})"
            )
        out.extend(_siblings_lacking(machine, ev))
    elif acc == "rocm":
        out.append(
            f"torch {ev.build} is the newest ROCm build with kernels for "
            f"{', '.join(machine.amd_archs()) or 'this GPU'} ({py})"
        )
    elif acc == "xpu":
        out.append(f"torch {ev.build} is the newest Intel XPU build for {pw} with {py}")
    elif acc == "mps":
        out.append(
            f"torch {release.version} from PyPI is the macOS build; it uses the GPU through MPS"
        )
    else:
        out.append(f"no supported GPU: torch {ev.build} is the newest CPU build for {pw} with {py}")
    out.append(_index_reason(ev, machine, pw))
    if release.torchvision and release.torchvision_for(machine.python) is None:
        out.append(
            f"torchvision {release.torchvision} has no wheels known for Python {machine.python}: "
            "it is left out of the command (install it separately if you need it)"
        )
    if release.torchaudio is None:
        out.append(
            f"no torchaudio release matches torch {release.minor} (torchaudio is in maintenance mode)"
        )
    return out


def _siblings_lacking(machine: Machine, ev: Eval) -> list[str]:
    """Per GPU: the other CUDA builds of the same release that have no kernels for it."""
    out = []
    release, variant = ev.release, ev.variant
    siblings = [v for v in release.variants if v.kind == "cuda" and v.name != variant.name]
    for g in machine.nvidia_gpus():
        if not g.compute_capability:
            continue
        cc = parse_cc(g.compute_capability)
        lacking = [
            v.name
            for v in siblings
            if v.arch_for(machine.platform) is not None
            and v.arch_for(machine.platform).runs_on(cc, True) is False
        ]
        if lacking:
            out.append(
                f"{g.label}: the {', '.join(lacking)} builds of torch {release.version} "
                f"have no kernels for it; {variant.name} has"
            )
    return out


def _index_reason(ev: Eval, machine: Machine, pw: str) -> str:
    release, variant = ev.release, ev.variant
    default = release.pypi_default.get(machine.platform)
    if default == variant.name:
        return f"the plain PyPI wheel of torch {release.version} on {pw} is exactly this build"
    if default:
        what = "a CPU-only build" if default == "cpu" else f"the {default} build"
        return (
            f"PyPI's torch {release.version} on {pw} is {what}, so the "
            f"{variant.name} index URL is needed"
        )
    return (
        f"the PyTorch index for {variant.name} is used (what PyPI ships for {pw} is not "
        "confirmed to be this build)"
    )
