"""When no build fits as is: the smallest change that makes one fit.

Each fallback is a small function tried in order (FALLBACKS); the first that has an answer
gives it. The last resort, `unsupported`, always answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gpucheck import versions
from gpucheck.recommend.commands import commands, conda_line
from gpucheck.recommend.decide import Context, why
from gpucheck.recommend.evaluate import Eval, driver_words, vstr
from gpucheck.recommend.model import Action, Alternative, Cause, Kind, Recommendation


def nothing_fits(ctx: Context, evals: list[Eval]) -> Recommendation:
    """The answer when no build fits the machine as it is."""
    if not evals:
        why_not = (
            f"no torch release in the table matches --torch {ctx.spec}"
            if ctx.spec
            else f"no {ctx.acc} build of torch for {ctx.pw} in the table"
        )
        ctx.reasons.append(why_not)
        return ctx.bare(Action.UNSUPPORTED)
    for fallback in FALLBACKS:
        rec = fallback(ctx, evals)
        if rec is not None:
            return rec
    return unsupported(ctx, evals)


def _pick(evals: list[Eval], allowed: set[Kind]) -> Eval | None:
    """The best build whose only problems are of the `allowed` kinds (confirmed first)."""
    ok = [e for e in evals if e.kinds <= allowed and not e.arch_unknown]
    return next((e for e in ok if e.confirmed), None) or next(iter(ok), None)


def _result(
    ctx: Context,
    ev: Eval,
    action: Action,
    reasons: Sequence[str],
    warnings: Sequence[str] = (),
    python_required: str | None = None,
) -> Recommendation:
    """A recommendation of build `ev` that needs a change first (or covers only some GPUs)."""
    machine = ctx.machine
    if action is Action.UPGRADE_DRIVER:  # the conda line for the upgraded driver
        machine = machine.replace(driver=None, driver_cuda="99.9")
    conda, _why_not = conda_line(ctx.table, machine, ctx.acc, ctx.spec)
    unknown = ["depends on unconfirmed facts: " + "; ".join(ev.unknown)] if ev.unknown else []
    return ctx.chosen(
        ev,
        commands(ctx.table, ctx.machine, ev),
        conda,
        action=action,
        reasons=ctx.reasons + list(reasons),
        warnings=ctx.warnings + list(warnings) + ev.assumptions + unknown,
        python_required=python_required,
    )


def change_python(ctx: Context, evals: list[Eval]) -> Recommendation | None:
    """Only the Python version stands in the way: name the nearest supported one."""
    ev = _pick(evals, {Kind.PYTHON})
    if ev is None:
        return None
    m = ctx.machine
    pys = ev.release.python
    target = nearest_python(m.python, pys)
    within = f" within --torch {ctx.spec}" if ctx.spec else ""
    return _result(
        ctx,
        ev,
        Action.CHANGE_PYTHON,
        [
            f"no torch build has wheels for Python {m.python} on {ctx.pw}{within}",
            f"use Python {target} (torch {ev.release.version} supports {py_range(pys)}); "
            f"then: {commands(ctx.table, m, ev).pip}",
        ]
        + why(ctx, ev, m.replace(python=target)),
        python_required=target,
    )


def upgrade_driver(ctx: Context, evals: list[Eval]) -> Recommendation | None:
    """The driver (and maybe Python) stands in the way: the build a current driver gets."""
    if ctx.acc != "cuda":
        return None
    ev = _pick(evals, {Kind.DRIVER}) or _pick(evals, {Kind.DRIVER, Kind.PYTHON})
    if ev is None:
        return None
    smallest = min(
        (
            e
            for e in evals
            if e.kinds <= {Kind.DRIVER, Kind.PYTHON} and e.driver_min and not e.arch_unknown
        ),
        key=lambda e: (versions.key(e.driver_min), tuple(-k for k in e.release.key)),
        default=None,
    )
    rs = [
        f"the NVIDIA driver is too old for every torch build that fits these GPUs "
        f"({driver_words(ctx.machine)})",
        f"install NVIDIA driver >= {vstr(ev.driver_full or ev.driver_min)} "
        f"for torch {ev.build} (it runs from >= {vstr(ev.driver_min)} through "
        "minor version compatibility)",
    ]
    predates = [
        p.text for p in ev.problems if p.cause is Cause.DRIVER_TOO_OLD and p.gpu is not None
    ]
    rs[1:1] = list(dict.fromkeys(predates))
    if smallest is not None and smallest.build != ev.build:
        rs.append(
            f"the smallest driver upgrade that gives a build: >= {vstr(smallest.driver_min)} "
            f"for torch {smallest.build}"
        )
    target = None
    if Kind.PYTHON in ev.kinds:
        pys = ev.release.python
        target = nearest_python(ctx.machine.python, pys)
        rs.append(f"also use Python {target} (torch {ev.release.version} supports {py_range(pys)})")
    return _result(ctx, ev, Action.UPGRADE_DRIVER, rs, python_required=target)


def cover_most_gpus(ctx: Context, evals: list[Eval]) -> Recommendation | None:
    """Mixed GPUs no single wheel covers: the build covering the most, and which to hide."""
    gpus = ctx.machine.nvidia_gpus()
    if ctx.acc != "cuda" or len(gpus) < 2:
        return None
    partial = [e for e in evals if e.kinds <= {Kind.ARCH} and e.covered and not e.arch_unknown]
    if not partial:
        return None
    best = max(partial, key=lambda e: (len(e.covered), e.confirmed, e.rank()))
    keep = ",".join(str(g.index) for g in best.covered)
    lost = "; ".join(g.label for g in best.uncovered)
    conda, _ = conda_line(ctx.table, ctx.machine, ctx.acc, ctx.spec)
    both = [f"conda-forge's build covers every GPU here: {conda}"] if conda else []
    return _result(
        ctx,
        best,
        Action.INSTALL,
        [
            "no single pip wheel of torch has kernels for every GPU in this machine",
            f"torch {best.build} covers {', '.join(g.label for g in best.covered)}",
        ]
        + both,
        [f"not covered by this build: {lost}; run with CUDA_VISIBLE_DEVICES={keep}"]
        + [p.text for p in best.of_kind(Kind.ARCH)],
    )


FALLBACKS: tuple[Callable[[Context, list[Eval]], Recommendation | None], ...] = (
    change_python,
    upgrade_driver,
    cover_most_gpus,
)


def unsupported(ctx: Context, evals: list[Eval]) -> Recommendation:
    """Nothing at all fits: say why, and offer the CPU build when there is one."""
    from gpucheck.recommend.decide import decide

    gpus = ctx.machine.nvidia_gpus()
    problems = []
    known = [e for e in evals if not e.arch_unknown]
    lost = [g for g in gpus if known and all(g in e.uncovered for e in known)]
    unknown = [g for g in lost if g.compute_capability is None]
    lost = [g for g in lost if g.compute_capability is not None]
    if unknown:
        problems.append(
            f"compute capability unknown for {', '.join(g.label for g in unknown)}: no build is "
            "known to have kernels for it (pass --compute-capability)"
        )
    if lost:
        problems.append(
            f"no torch build in the table has kernels for {', '.join(g.label for g in lost)}"
        )
    if ctx.acc == "rocm":
        problems.extend(p.text for e in known[:1] for p in e.of_kind(Kind.ARCH))
    for e in evals[:1]:
        problems.extend(p.text for p in _by_kind(e))
    rs = ctx.reasons + [f"no torch build in the table fits this machine ({ctx.pw})"] + problems[:3]
    alts = []
    if ctx.acc in ("cuda", "rocm", "xpu"):
        cpu_machine = ctx.machine.replace(gpus=(), rocm_archs=(), torch=None)
        cpu = decide(ctx.table, cpu_machine, ctx.spec)
        if cpu.pip:
            alts.append(
                Alternative(
                    cpu.torch, cpu.variant, "CPU-only build (the GPU will not be used)", cpu.pip
                )
            )
            rs.append(f"a CPU-only build still works: {cpu.pip}")
    return ctx.bare(Action.UNSUPPORTED, reasons=tuple(dict.fromkeys(rs)), alternatives=tuple(alts))


def _by_kind(ev: Eval) -> list:
    """Problems grouped by kind in the order each kind first appeared (as they were found)."""
    order: dict[Kind, list] = {}
    for p in ev.problems:
        order.setdefault(p.kind, []).append(p)
    return [p for ps in order.values() for p in ps]


def py_range(pythons: tuple[str, ...]) -> str:
    """('3.10', ..., '3.14', '3.14t') -> '3.10–3.14 and 3.14t'."""
    plain = [p for p in pythons if not p.endswith("t")]
    free = [p for p in pythons if p.endswith("t")]
    text = f"{plain[0]}–{plain[-1]}" if plain else ""
    return " and ".join(filter(None, [text, ", ".join(free)]))


def nearest_python(current: str | None, supported: tuple[str, ...]) -> str:
    """The supported Python closest to `current` (the newer one on a tie); a free-threaded
    Python ('3.14t') gets a free-threaded one when the release has any."""
    if not supported:
        return "3"
    ft = bool(current and current.endswith("t"))
    same = [p for p in supported if p.endswith("t") == ft] or [
        p for p in supported if not p.endswith("t")
    ]
    pool = same or list(supported)
    if current is None:
        return pool[-1]

    def minor(p: str) -> int:
        return int(p.rstrip("t").split(".")[1])

    cur_major = int(current.split(".")[0])
    return min(
        pool, key=lambda p: (abs(minor(p) - minor(current)) if cur_major == 3 else 0, -minor(p))
    )
