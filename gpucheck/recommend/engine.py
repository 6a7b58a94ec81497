"""The decision: which torch build fits a machine (pure; no I/O).

Policy (shared/design.md 3b, docs/recommend.md): a build is a candidate only if the driver
can run it (full-feature minimum, or the minor-version-compatibility floor of its CUDA major),
every GPU has a cubin or usable PTX in it, and the Python and the OS/arch have that wheel.
Among candidates the newest torch release wins; within it the variant whose full-feature
driver minimum is met, then the newest CUDA. Facts the table marks unconfirmed are used only
when no confirmed build fits, and then with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from gpucheck.compat import (
    ArchList,
    CompatTable,
    Release,
    Variant,
    load_table,
    parse_cc,
    parse_version,
    version_key,
)
from gpucheck.recommend.machine import InstalledTorch, Machine, MachineGpu

ACTIONS = ("none", "install", "upgrade-driver", "change-python", "unsupported")
PLATFORM_WORDS = {
    "linux-x86_64": "Linux x86_64",
    "linux-aarch64": "Linux aarch64",
    "windows-x86_64": "Windows x86_64",
    "macos-arm64": "macOS arm64",
    "macos-x86_64": "macOS x86_64",
}


def vstr(v: tuple[int, ...] | None) -> str:
    if v is None:
        return "?"
    # NVIDIA writes every part after the first with at least two digits: 450.80.02, 570.26
    return ".".join([str(v[0])] + [f"{p:02d}" for p in v[1:]])


def ccs(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def parse_torch_spec(spec: str | None) -> SpecifierSet | None:
    """'2.5.*' -> ==2.5.*, '<2.10' -> <2.10, '2.13.0' -> ==2.13.0; ValueError when unreadable."""
    if spec is None or not spec.strip():
        return None
    text = spec.strip()
    if text.lower().startswith("torch"):
        text = text[5:].strip()
    parts = []
    for part in text.split(","):
        part = part.strip()
        if re.match(r"^\d", part):
            part = "==" + part
        parts.append(part)
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier:
        raise ValueError(f"not a version constraint: {spec!r} (try '2.5.*' or '<2.10')") from None


# --- evaluation of one build against one machine --------------------------------------


@dataclass
class Eval:
    release: Release
    variant: Variant
    problems: dict[str, list[str]] = field(default_factory=dict)  # category -> texts
    unknown: list[str] = field(default_factory=list)  # facts the table cannot confirm
    assumptions: list[str] = field(default_factory=list)  # facts about the machine not known
    notes: list[str] = field(default_factory=list)
    arch_unknown: bool = False  # the table does not know which GPUs this build runs on
    driver_level: str = "n/a"  # "full" | "mvc" | "none" | "unknown" | "n/a"
    driver_min: tuple[int, ...] | None = None  # MVC floor (what it needs at least)
    driver_full: tuple[int, ...] | None = None
    uncovered: list[MachineGpu] = field(default_factory=list)
    covered: list[MachineGpu] = field(default_factory=list)

    def problem(self, category: str, text: str) -> None:
        self.problems.setdefault(category, []).append(text)

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
            minor = v.cuda
        elif v.kind == "rocm":
            minor = version_key(parse_version(v.name[4:]))
        else:
            minor = (0,)
        return (self.release.key, self.driver_level == "full", minor)


def driver_os(machine: Machine) -> str:
    """WSL2 runs the Windows driver: its version is compared with the Windows minimums."""
    return "windows" if machine.os == "windows" or machine.wsl else "linux"


def _driver_tuple(machine: Machine) -> tuple[int, ...] | None:
    if not machine.driver:
        return None
    try:
        return parse_version(machine.driver)
    except ValueError:
        return None


def _driver_cuda(machine: Machine) -> tuple[int, int] | None:
    if not machine.driver_cuda:
        return None
    m = re.match(r"(\d+)\.(\d+)", machine.driver_cuda)
    return (int(m.group(1)), int(m.group(2))) if m else None


def driver_words(machine: Machine) -> str:
    text = f"this driver is {machine.driver or 'unknown'}"
    if machine.driver_cuda:
        text += f" (CUDA {machine.driver_cuda})"
    return text


def driver_level(
    table: CompatTable, machine: Machine, cuda: tuple[int, int]
) -> tuple[str, tuple[int, ...] | None, tuple[int, ...] | None]:
    os_name = driver_os(machine)
    mvc = table.mvc_driver(cuda[0], os_name)
    full = table.ga_driver(cuda, os_name)
    d = _driver_tuple(machine)
    if d is not None:
        if full is not None and version_key(d) >= version_key(full):
            return "full", mvc, full
        if mvc is not None and version_key(d) >= version_key(mvc):
            return "mvc", mvc, full
        return "none", mvc, full
    dc = _driver_cuda(machine)
    if dc is not None:
        if cuda <= dc:
            return "full", mvc, full
        if cuda[0] == dc[0]:
            return "mvc", mvc, full
        return "none", mvc, full
    return "unknown", mvc, full


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
    ev = Eval(release, variant)
    platform = machine.platform
    pw = PLATFORM_WORDS.get(platform, platform)
    if variant.status != "confirmed":
        ev.unknown.append(f"that torch {release.version} has a {variant.name} build")
    if check_platform:
        if platform in variant.platforms:
            pass
        elif platform in variant.unconfirmed_platforms:
            ev.unknown.append(f"that torch {release.version} has a {variant.name} wheel for {pw}")
        else:
            ev.problem("platform", f"torch {release.version} has no {variant.name} wheel for {pw}")
        if variant.kind == "rocm" and machine.wsl:
            ev.problem("platform", "ROCm wheels under WSL2 are not covered by the table")
    if check_python:
        py = machine.python
        if py is None:
            ev.assumptions.append("Python version unknown")
        elif py in release.python:
            pass
        elif py in release.python_unconfirmed:
            ev.unknown.append(f"that torch {release.version} has Python {py} wheels")
        else:
            ev.problem("python", f"torch {release.version} has no wheels for Python {py}")

    if variant.kind == "cuda":
        _evaluate_cuda(table, machine, ev, arch_list)
    elif variant.kind == "rocm":
        _evaluate_rocm(table, machine, ev)
    return ev


def _evaluate_cuda(
    table: CompatTable, machine: Machine, ev: Eval, arch_list: ArchList | None
) -> None:
    variant = ev.variant
    cuda = variant.cuda
    assert cuda is not None
    level, mvc, full = driver_level(table, machine, cuda)
    ev.driver_level, ev.driver_min, ev.driver_full = level, mvc, full
    os_name = driver_os(machine)
    if level == "none":
        ev.problem(
            "driver",
            f"torch {ev.build} needs driver >= {vstr(mvc)}; {driver_words(machine)}",
        )
    elif level == "unknown":
        ev.assumptions.append(f"driver version unknown: {ev.build} needs driver >= {vstr(mvc)}")
    elif level == "mvc":
        extra = (
            f"; the full feature set needs >= {vstr(full)}"
            if full
            else f"; NVIDIA publishes no {os_name.title()} full-feature minimum for CUDA {ccs(cuda)}"
        )
        ev.notes.append(
            f"driver {machine.driver or machine.driver_cuda} runs {variant.name} through CUDA "
            f"minor version compatibility (>= {vstr(mvc)}){extra}"
        )
    ptx_ok: bool | None = {"full": True, "mvc": False, "none": False}.get(level)
    arch = arch_list or variant.arch_for(machine.platform)
    gpus = machine.nvidia_gpus()
    if arch is None:
        if gpus:
            ev.arch_unknown = True
            ev.unknown.append(
                f"which GPU architectures torch {ev.build} has for "
                f"{PLATFORM_WORDS.get(machine.platform, machine.platform)}"
            )
        ev.covered = [g for g in gpus]
        return
    low_sm = []
    for g in gpus:
        if g.compute_capability is None:
            ev.assumptions.append(
                f"{g.label}: compute capability unknown (pass --compute-capability)"
            )
            ev.covered.append(g)
            continue
        cc = parse_cc(g.compute_capability)
        fit = arch.runs_on(cc, ptx_ok)
        if fit is True:
            ev.covered.append(g)
            if arch.via_ptx_only(cc):
                ev.notes.append(
                    f"{g.label} runs {ev.build} through PTX JIT (no sm_{cc[0]}{cc[1]} cubin)"
                )
            if cc < (7, 5):
                low_sm.append(g)
        elif fit is None:
            ev.covered.append(g)
            ev.assumptions.append(f"{g.label} needs PTX JIT, which needs driver >= {vstr(full)}")
        elif arch.via_ptx_only(cc):
            ev.covered.append(g)
            ev.problem(
                "driver",
                f"{g.label} has no cubin in {ev.build}; its PTX needs driver >= {vstr(full)}, "
                f"{driver_words(machine)}",
            )
        else:
            ev.uncovered.append(g)
            ev.problem(
                "arch", f"torch {ev.build} has no kernels for {g.label}; it has {arch.describe()}"
            )
    if low_sm:
        limit_v, limit_cc = table.cudnn_min_sm
        if variant.cudnn is None:
            ev.arch_unknown = True
            ev.unknown.append(f"the cuDNN version of {ev.build} (cuDNN >= 9.11 needs SM >= 7.5)")
        elif version_key(parse_version(variant.cudnn)) >= version_key(limit_v):
            for g in low_sm:
                ev.covered.remove(g)
                ev.uncovered.append(g)
                ev.problem(
                    "arch",
                    f"{ev.build} ships cuDNN {variant.cudnn}, which refuses SM < {ccs(limit_cc)} "
                    f"({g.label})",
                )


def _evaluate_rocm(table: CompatTable, machine: Machine, ev: Eval) -> None:
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
            ev.problem("arch", f"torch {ev.build} has no kernels for {gfx}")


# --- the recommendation ---------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    action: str  # none | install | upgrade-driver | change-python | unsupported
    variant: str | None = None  # None: nothing to install (and no commands)
    torch: str | None = None
    index_url: str | None = None
    pip: str | None = None
    uv: str | None = None
    conda: str | None = None
    torchvision: str | None = None
    torchaudio: str | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    build: str | None = None  # "2.14.1+cu126"
    driver_required: str | None = None  # the least driver for this build (MVC floor)
    driver_full_feature: str | None = None
    python_required: str | None = None  # when action is change-python: the Python to use
    conda_torch: str | None = None  # the conda-forge pytorch version the conda line gives
    installed: dict[str, Any] | None = None  # {"version", "variant", "fits", "problems"}
    alternatives: tuple[dict[str, Any], ...] = ()
    machine: dict[str, Any] | None = None
    table: str = "built-in"

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "torch": self.torch,
            "build": self.build,
            "index_url": self.index_url,
            "pip": self.pip,
            "uv": self.uv,
            "conda": self.conda,
            "conda_torch": self.conda_torch,
            "torchvision": self.torchvision,
            "torchaudio": self.torchaudio,
            "action": self.action,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "driver_required": self.driver_required,
            "driver_full_feature": self.driver_full_feature,
            "python_required": self.python_required,
            "installed": self.installed,
            "alternatives": [dict(a) for a in self.alternatives],
            "machine": self.machine,
            "table": self.table,
        }


def accelerator(machine: Machine) -> str:
    if machine.os == "macos":
        return "mps" if machine.platform == "macos-arm64" else "cpu"
    if machine.nvidia_gpus():
        return "cuda"
    if machine.amd_archs() or machine.amd_gpus():
        return "rocm"
    if machine.intel_gpus():
        return "xpu"
    return "cpu"


def _kinds_for(acc: str) -> tuple[str, ...]:
    return {"cuda": ("cuda",), "rocm": ("rocm",), "xpu": ("xpu",)}.get(acc, ("cpu",))


def _evaluate_all(
    table: CompatTable, machine: Machine, spec: SpecifierSet | None, acc: str
) -> list[Eval]:
    kinds = _kinds_for(acc)
    out = []
    for release in table.releases:
        if spec is not None and not spec.contains(Version(release.version), prereleases=True):
            continue
        for variant in release.variants:
            if variant.kind in kinds:
                out.append(evaluate(table, machine, release, variant))
    out.sort(key=lambda e: e.rank(), reverse=True)
    return out


def _commands(table: CompatTable, machine: Machine, ev: Eval) -> dict[str, Any]:
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
    return {
        "plain": plain,
        "index_url": index_url,
        "pip": pip,
        "uv": uv,
        "torchvision": release.torchvision,
        "torchaudio": release.torchaudio,
    }


def _conda(table: CompatTable, machine: Machine, acc: str) -> tuple[str | None, str | None]:
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
        if level == "none":
            continue
        ok = True
        for g in machine.nvidia_gpus():
            if (
                g.compute_capability
                and b.arch.runs_on(parse_cc(g.compute_capability), level == "full") is not True
            ):
                ok = False
        if ok:
            return (
                f"conda install -c conda-forge pytorch-gpu cuda-version={ccs(b.cuda)}",
                None,
            )
    return None, "no conda-forge CUDA build of pytorch fits this driver and these GPUs"


def _installed_variant(table: CompatTable, machine: Machine, inst: InstalledTorch) -> str | None:
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


@dataclass
class InstalledFit:
    version: str
    variant: str | None
    fits: bool | None  # None: the table cannot say
    problems: list[dict[str, str]] = field(default_factory=list)  # {"id", "severity", "text"}
    notes: list[str] = field(default_factory=list)
    ev: Eval | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "variant": self.variant,
            "fits": self.fits,
            "problems": [dict(p) for p in self.problems],
        }


def installed_fit(
    table: CompatTable, machine: Machine, acc: str, spec: SpecifierSet | None
) -> InstalledFit | None:
    inst = machine.torch
    if inst is None:
        return None
    name = _installed_variant(table, machine, inst)
    fit = InstalledFit(inst.version, name, None)
    release = table.release(inst.base)
    if spec is not None:
        try:
            if not spec.contains(Version(inst.base), prereleases=True):
                fit.fits = False
                fit.notes.append(f"installed torch {inst.version} does not match --torch {spec}")
                return fit
        except ValueError:
            pass
    kind = None
    if name:
        try:
            from gpucheck.compat import kind_of_variant

            kind = kind_of_variant(name)
        except ValueError:
            kind = None
    elif inst.hip:
        kind = "rocm"
    if kind is None:
        fit.notes.append(f"installed torch {inst.version}: build not recognised")
        return fit
    # backend against the machine
    if acc in ("cuda", "rocm", "xpu") and kind != acc:
        fit.fits = False
        # A CPU build on a GPU machine is diagnose's finding (GC202), not a GC5xx.
        if kind != "cpu" and acc != "xpu":
            gpus = "NVIDIA" if acc == "cuda" else "AMD"
            fit.problems.append(
                {
                    "id": "GC504",
                    "severity": "error",
                    "text": f"torch {inst.version} is a {kind.upper()} build, but this machine has {gpus} GPUs",
                }
            )
        return fit
    if acc in ("cpu", "mps") and kind != "cpu":
        fit.fits = True
        fit.notes.append(
            f"torch {inst.version} is a {kind.upper()} build on a machine with no matching GPU: "
            "it runs on the CPU only, and a CPU build is far smaller"
        )
        return fit
    if release is None:
        newest = table.releases[0]
        if version_key(parse_version(re.sub(r"[^0-9.].*$", "", inst.base) or "0")) > newest.key:
            fit.notes.append(
                f"installed torch {inst.version} is newer than this table (newest {newest.version}); "
                "update gpucheck or pass --compat FILE"
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
    for text in ev.problems.get("driver", []):
        fit.problems.append(
            {
                "id": "GC501",
                "severity": "error",
                "text": text.replace(f"torch {ev.build}", f"torch {inst.version}"),
            }
        )
    arch_texts = ev.problems.get("arch", [])
    gpus = machine.nvidia_gpus()
    for g in ev.uncovered:
        texts = [t for t in arch_texts if g.label in t]
        is_cudnn = any("cuDNN" in t for t in texts)
        partial = len(ev.uncovered) < len(gpus)
        fit.problems.append(
            {
                "id": "GC503" if is_cudnn else ("GC505" if partial else "GC502"),
                "severity": "warn" if partial else "error",
                "text": (
                    texts[0] if texts else f"torch {inst.version} cannot run on {g.label}"
                ).replace(f"torch {ev.build}", f"torch {inst.version}"),
            }
        )
    fit.notes.extend(ev.notes)
    if fit.problems:
        fit.fits = False
    elif ev.unknown:
        fit.fits = None
        fit.notes.append("cannot fully confirm the installed build: " + "; ".join(ev.unknown))
    else:
        fit.fits = True
    return fit


def recommend(
    snapshot_or_machine: Any,
    *,
    table: CompatTable | None = None,
    torch_spec: str | None = None,
) -> Recommendation:
    """The torch build for a Snapshot or a Machine. Pure: reads only its arguments and the table.

    Raises ValueError for an unreadable `torch_spec`.
    """
    table = table or load_table()
    if isinstance(snapshot_or_machine, Machine):
        machine = snapshot_or_machine
    else:
        machine = Machine.from_snapshot(snapshot_or_machine, table)
    spec = parse_torch_spec(torch_spec)
    return _decide(table, machine, spec)


def _decide(table: CompatTable, machine: Machine, spec: SpecifierSet | None) -> Recommendation:
    acc = accelerator(machine)
    reasons: list[str] = []
    warnings: list[str] = []
    pw = PLATFORM_WORDS.get(machine.platform, machine.platform)
    base = {"machine": machine.to_dict(), "table": table.origin}

    if machine.platform not in PLATFORM_WORDS:
        return Recommendation(
            "unsupported",
            reasons=(f"no torch wheels for {machine.os} {machine.arch} in the table",),
            **base,
        )

    # what is on the machine besides the accelerator we pick
    if acc == "cuda" and (machine.amd_archs() or machine.intel_gpus()):
        warnings.append(
            "NVIDIA and other GPUs in one machine: recommending for the NVIDIA GPUs only"
        )
    if machine.os == "macos" and machine.nvidia_gpus():
        warnings.append("there is no CUDA on macOS: NVIDIA GPUs cannot be used by torch there")
    if machine.wsl and acc == "cuda":
        reasons.append(
            "WSL2: Linux wheels, run by the Windows driver (its version is compared with NVIDIA's "
            "Windows minimums); do not install a Linux NVIDIA driver inside WSL"
        )
    if acc == "xpu":
        warnings.append(
            "which Intel GPUs the xpu wheels support is not confirmed by the table; integrated "
            "GPUs may not be"
        )
    if acc == "rocm":
        warnings.append("ROCm wheels need the amdgpu kernel driver; its version is not checked")

    evals = _evaluate_all(table, machine, spec, acc)
    fit = installed_fit(table, machine, acc, spec)

    chosen = next((e for e in evals if e.fits and e.confirmed), None)
    fallback = False
    if chosen is None:
        usable = [e for e in evals if e.usable_fallback]  # fewest unknowns, then newest
        chosen = min(usable, key=lambda e: len(e.unknown)) if usable else None
        fallback = chosen is not None
    action = "install"
    alternatives: list[dict[str, Any]] = []
    python_required = None

    if chosen is None:
        return _nothing_fits(table, machine, spec, acc, evals, reasons, warnings, fit, base)

    if fallback:
        warnings.append(
            "no build confirmed by the table fits; this one depends on unconfirmed facts: "
            + "; ".join(chosen.unknown)
        )
    # a newer release that might fit but is not confirmed
    newer_unknown = [
        e for e in evals if e.fits and not e.confirmed and e.release.key > chosen.release.key
    ]
    if newer_unknown and not fallback:
        e = newer_unknown[0]
        warnings.append(
            f"torch {e.release.version} may fit too, but the table cannot confirm "
            + "; ".join(e.unknown[:2])
        )
    # what a newer driver or another Python would give
    for category in ("driver", "python"):
        better = next(
            (
                e
                for e in evals
                if set(e.problems) == {category}
                and e.confirmed
                and e.release.key > chosen.release.key
            ),
            None,
        )
        if better is not None:
            if category == "driver":
                warnings.append(
                    f"driver >= {vstr(better.driver_min)} would allow torch {better.build} "
                    f"({driver_words(machine)})"
                )
            else:
                pys = better.release.python
                warnings.append(
                    f"Python {pys[0]}–{pys[-1]} would allow torch {better.build} "
                    f"(this is Python {machine.python})"
                )

    reasons.extend(_why(table, machine, chosen, acc, pw))
    reasons.extend(chosen.notes)
    warnings.extend(dict.fromkeys(chosen.assumptions))
    cmds = _commands(table, machine, chosen)
    conda, conda_why = _conda(table, machine, acc)
    if conda is None and conda_why:
        reasons.append(f"conda: {conda_why}")
    installed = None
    result_ev = chosen
    if fit is not None:
        installed = fit.to_dict()
        warnings.extend(fit.notes if fit.fits is not False else [])
        if fit.fits is not False and not fit.problems:
            action = "none"
            reasons.insert(
                0, f"the installed torch {fit.version} already fits this machine; nothing to do"
            )
            if fit.ev is not None and fit.ev.build != chosen.build:
                alternatives.append(
                    {
                        "torch": chosen.release.version,
                        "variant": chosen.variant.name,
                        "why": "newest build that fits",
                        "pip": cmds["pip"],
                    }
                )
                reasons.append(f"newest build that fits: {chosen.build} ({cmds['pip']})")
                result_ev = fit.ev
                cmds = _commands(table, machine, fit.ev)
            elif fit.ev is None:
                result_ev = None
        else:
            for p in fit.problems:
                reasons.insert(0, p["text"])
    if result_ev is None:  # installed build not in the table: describe it as installed
        return Recommendation(
            action,
            variant=fit.variant if fit else None,
            torch=fit.version if fit else None,
            reasons=tuple(reasons),
            warnings=tuple(dict.fromkeys(warnings)),
            installed=installed,
            alternatives=tuple(alternatives),
            **base,
        )
    return _recommendation(
        table,
        result_ev,
        cmds,
        conda,
        action=action,
        reasons=reasons,
        warnings=warnings,
        installed=installed,
        alternatives=alternatives,
        python_required=python_required,
        base=base,
    )


def _recommendation(
    table: CompatTable,
    ev: Eval,
    cmds: dict[str, Any],
    conda: str | None,
    *,
    action: str,
    reasons: list[str],
    warnings: list[str],
    installed: dict[str, Any] | None,
    base: dict[str, Any],
    alternatives: Sequence[dict[str, Any]] = (),
    python_required: str | None = None,
) -> Recommendation:
    """The Recommendation for one chosen build (reasons and warnings without repeats)."""
    return Recommendation(
        action,
        variant=ev.variant.name,
        torch=ev.release.version,
        index_url=cmds["index_url"],
        pip=cmds["pip"],
        uv=cmds["uv"],
        conda=conda,
        torchvision=cmds["torchvision"],
        torchaudio=cmds["torchaudio"],
        reasons=tuple(dict.fromkeys(reasons)),
        warnings=tuple(dict.fromkeys(warnings)),
        build=ev.build,
        driver_required=vstr(ev.driver_min) if ev.driver_min else None,
        driver_full_feature=vstr(ev.driver_full) if ev.driver_full else None,
        python_required=python_required,
        conda_torch=table.conda_version if conda else None,
        installed=installed,
        alternatives=tuple(alternatives),
        **base,
    )


def _why(table: CompatTable, machine: Machine, ev: Eval, acc: str, pw: str) -> list[str]:
    out = []
    release, variant = ev.release, ev.variant
    py = f"Python {machine.python}" if machine.python else "this Python"
    if acc == "cuda":
        gpus = machine.nvidia_gpus()
        names = ", ".join(g.label for g in gpus)
        out.append(f"torch {ev.build} is the newest build that fits {names} on {pw} with {py}")
        if ev.driver_level == "full":
            out.append(
                f"driver {machine.driver or machine.driver_cuda} meets the full-feature minimum "
                f"of CUDA {ccs(variant.cuda)} (>= {vstr(ev.driver_full)})"
            )
        siblings = [v for v in release.variants if v.kind == "cuda" and v.name != variant.name]
        for g in gpus:
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
    plain = release.pypi_default.get(machine.platform) == variant.name
    if plain:
        out.append(f"the plain PyPI wheel of torch {release.version} on {pw} is exactly this build")
    else:
        default = release.pypi_default.get(machine.platform)
        if default:
            what = "a CPU-only build" if default == "cpu" else f"the {default} build"
            out.append(
                f"PyPI's torch {release.version} on {pw} is {what}, so the "
                f"{variant.name} index URL is needed"
            )
        else:
            out.append(
                f"the PyTorch index for {variant.name} is used (what PyPI ships for {pw} is not "
                "confirmed to be this build)"
            )
    if release.torchaudio is None:
        out.append(
            f"no torchaudio release matches torch {release.minor} (torchaudio is in maintenance mode)"
        )
    return out


def _nothing_fits(
    table: CompatTable,
    machine: Machine,
    spec: SpecifierSet | None,
    acc: str,
    evals: list[Eval],
    reasons: list[str],
    warnings: list[str],
    fit: InstalledFit | None,
    base: dict[str, Any],
) -> Recommendation:
    pw = PLATFORM_WORDS.get(machine.platform, machine.platform)
    installed = fit.to_dict() if fit else None

    def pick(allowed: set[str]) -> Eval | None:
        ok = [e for e in evals if set(e.problems) <= allowed and not e.arch_unknown]
        return next((e for e in ok if e.confirmed), None) or next(iter(ok), None)

    def result(
        ev: Eval,
        action: str,
        extra_reasons: list[str],
        extra_warn: list[str] = (),
        python_required: str | None = None,
    ) -> Recommendation:
        cmds = _commands(table, machine, ev)
        conda, _why_not = _conda(
            table,
            machine.replace(driver=None, driver_cuda="99.9")
            if action == "upgrade-driver"
            else machine,
            acc,
        )
        unknown = ["depends on unconfirmed facts: " + "; ".join(ev.unknown)] if ev.unknown else []
        return _recommendation(
            table,
            ev,
            cmds,
            conda,
            action=action,
            reasons=reasons + extra_reasons,
            warnings=warnings + list(extra_warn) + ev.assumptions + unknown,
            installed=installed,
            python_required=python_required,
            base=base,
        )

    if not evals:
        why = (
            f"no torch release in the table matches --torch {spec}"
            if spec
            else f"no {acc} build of torch for {pw} in the table"
        )
        return Recommendation(
            "unsupported",
            reasons=tuple(reasons + [why]),
            warnings=tuple(warnings),
            installed=installed,
            **base,
        )

    # 1. Python only
    ev = pick({"python"})
    if ev is not None:
        pys = ev.release.python
        target = _nearest_python(machine.python, pys)
        return result(
            ev,
            "change-python",
            [
                f"no torch build has wheels for Python {machine.python} on {pw}"
                + (f" within --torch {spec}" if spec else ""),
                f"use Python {target} (torch {ev.release.version} supports {pys[0]}–{pys[-1]}); "
                f"then: {_commands(table, machine, ev)['pip']}",
            ]
            + _why(table, machine.replace(python=target), ev, acc, pw),
            python_required=target,
        )

    # 2. driver (and maybe Python)
    ev_driver = pick({"driver"}) or pick({"driver", "python"})
    if ev_driver is not None and acc == "cuda":
        need_py = "python" in ev_driver.problems
        smallest = min(
            (
                e
                for e in evals
                if set(e.problems) <= {"driver", "python"} and e.driver_min and not e.arch_unknown
            ),
            key=lambda e: (version_key(e.driver_min), tuple(-k for k in e.release.key)),
            default=None,
        )
        rs = [
            f"the NVIDIA driver is too old for every torch build that fits these GPUs "
            f"({driver_words(machine)})",
            f"install NVIDIA driver >= {vstr(ev_driver.driver_full or ev_driver.driver_min)} "
            f"for torch {ev_driver.build} (it runs from >= {vstr(ev_driver.driver_min)} through "
            "minor version compatibility)",
        ]
        if smallest is not None and smallest.build != ev_driver.build:
            rs.append(
                f"the smallest driver upgrade that gives a build: >= {vstr(smallest.driver_min)} "
                f"for torch {smallest.build}"
            )
        target = None
        if need_py:
            target = _nearest_python(machine.python, ev_driver.release.python)
            rs.append(
                f"also use Python {target} (torch {ev_driver.release.version} supports "
                f"{ev_driver.release.python[0]}–{ev_driver.release.python[-1]})"
            )
        return result(ev_driver, "upgrade-driver", rs, python_required=target)

    # 3. mixed GPUs: cover as many as one build can
    gpus = machine.nvidia_gpus()
    if acc == "cuda" and len(gpus) > 1:
        partial = [
            e for e in evals if set(e.problems) <= {"arch"} and e.covered and not e.arch_unknown
        ]
        if partial:
            best = max(partial, key=lambda e: (len(e.covered), e.confirmed, e.rank()))
            keep = ",".join(str(g.index) for g in best.covered)
            lost = "; ".join(g.label for g in best.uncovered)
            conda, _ = _conda(table, machine, acc)
            both = [f"conda-forge's build covers every GPU here: {conda}"] if conda else []
            return result(
                best,
                "install",
                [
                    "no single pip wheel of torch has kernels for every GPU in this machine",
                    f"torch {best.build} covers {', '.join(g.label for g in best.covered)}",
                ]
                + both,
                [f"not covered by this build: {lost}; run with CUDA_VISIBLE_DEVICES={keep}"]
                + [t for t in best.problems.get("arch", [])],
            )

    # 4. nothing at all
    problems = []
    known = [e for e in evals if not e.arch_unknown]
    lost = [g for g in gpus if known and all(g in e.uncovered for e in known)]
    if lost:
        problems.append(
            f"no torch build in the table has kernels for {', '.join(g.label for g in lost)}"
        )
    if acc == "rocm":
        problems.extend(t for e in known[:1] for t in e.problems.get("arch", []))
    for e in evals[:1]:
        for texts in e.problems.values():
            problems.extend(texts)
    rs = reasons + [f"no torch build in the table fits this machine ({pw})"] + problems[:3]
    alts = []
    if acc in ("cuda", "rocm", "xpu"):
        cpu = _decide(table, machine.replace(gpus=(), rocm_archs=(), torch=None), spec)
        if cpu.pip:
            alts.append(
                {
                    "torch": cpu.torch,
                    "variant": cpu.variant,
                    "why": "CPU-only build (the GPU will not be used)",
                    "pip": cpu.pip,
                }
            )
            rs.append(f"a CPU-only build still works: {cpu.pip}")
    return Recommendation(
        "unsupported",
        reasons=tuple(dict.fromkeys(rs)),
        warnings=tuple(warnings),
        installed=installed,
        alternatives=tuple(alts),
        **base,
    )


def _nearest_python(current: str | None, supported: tuple[str, ...]) -> str:
    if not supported:
        return "3"
    if current is None:
        return supported[-1]
    cur = tuple(int(x) for x in current.split("."))
    return min(
        supported,
        key=lambda p: (
            abs(int(p.split(".")[1]) - cur[1]) if cur[0] == 3 else 0,
            -int(p.split(".")[1]),
        ),
    )
