"""Rule GC216: torch and torchvision that were not built for each other.

torchvision's compiled operators link against one torch release and one build of it (CPU,
a CUDA or ROCm version). A pair from different releases, or a +cpu torch with the PyPI
(CUDA) torchvision, imports but fails at the first operator: "operator torchvision::nms does
not exist". The pairs are the built-in compat table's (`torch.json`, each release's
`torchvision`, read from torchvision's PyPI metadata, which pins `torch==X`; its `companions`
block names the source); a plain PyPI wheel's build is that release's `pypi_default`.
"""

from __future__ import annotations

from collections.abc import Iterator

from gpucheck import compat
from gpucheck.diagnose import rule
from gpucheck.findings import Finding, Severity
from gpucheck.probe.parsers import local_tag
from gpucheck.snapshot import Snapshot


def _release_part(version: str) -> tuple[int, ...] | None:
    head = version.split("+", 1)[0]
    try:
        return tuple(int(p) for p in head.split(".")[:3])
    except ValueError:
        return None


def _platform(s: Snapshot) -> str:
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(s.system.arch or "")
    arch = arch or s.system.arch or "?"
    if s.system.os == "macos" and arch == "aarch64":
        arch = "arm64"
    return f"{s.system.os}-{arch}"


def pair_problems(torch: str, vision: str, platform: str) -> tuple[list[str], str | None]:
    """What is wrong with this pair (empty: nothing known), and the torchvision that fits."""
    t, v = _release_part(torch), _release_part(vision)
    if t is None or v is None:
        return [], None
    releases = compat.load_table().releases
    by_minor = {r.key[:2]: r for r in releases}
    by_vision_minor = {_release_part(r.torchvision)[:2]: r for r in releases if r.torchvision}
    mine = by_minor.get(t[:2])
    theirs = by_vision_minor.get(v[:2])
    problems = []
    if mine is not None and mine.torchvision and theirs is not mine:
        built_for = f" (built for torch {theirs.minor})" if theirs is not None else ""
        problems.append(
            f"torchvision {vision}{built_for} does not pair with torch {torch}: torch "
            f"{mine.minor} takes torchvision {'.'.join(mine.torchvision.split('.')[:2])}"
        )
    # The build: the local tag, or for a plain PyPI wheel that release's PyPI default.
    t_build = local_tag(torch) or (mine.pypi_default.get(platform) if mine else None)
    v_build = local_tag(vision) or (theirs.pypi_default.get(platform) if theirs else None)
    if not problems and t_build and v_build and t_build != v_build:
        problems.append(
            f"torch {torch} is the {t_build} build, torchvision {vision} the {v_build} build"
        )
    want = None
    exact = next((r for r in releases if r.version == torch.split("+", 1)[0]), None)
    if exact is not None and exact.torchvision:
        want = exact.torchvision + (f"+{local_tag(torch)}" if local_tag(torch) else "")
    return problems, want


@rule("GC216")
def torchvision_pair(s: Snapshot) -> Iterator[Finding]:
    """GC216: the installed torchvision was built for another torch release or build."""
    t = s.torch
    if not (t.installed and t.version and t.torchvision):
        return
    problems, want = pair_problems(t.version, t.torchvision, _platform(s))
    if not problems:
        return
    tag = local_tag(t.version)
    if want and tag:
        index = compat.load_table().index_url.replace("{variant}", tag)
        fix = f"Install the torchvision built for it: `pip install torchvision=={want} --index-url {index}`."
    elif want:
        fix = f"Install the torchvision built for it: `pip install torchvision=={want}`."
    else:
        fix = "`gpucheck recommend` prints the torch and torchvision pair to install together."
    yield Finding(
        "GC216",
        Severity.ERROR,
        "torchvision does not match the installed torch",
        (*problems, 'its operators fail to load ("operator torchvision::nms does not exist")'),
        fix=fix,
    )
