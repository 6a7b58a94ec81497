"""The compatibility table's value types: arch lists, builds, releases, drivers, GPUs.

Frozen data, built and validated by `gpucheck.compat.build_table`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gpucheck import versions


class CompatError(ValueError):
    """A compatibility table that is malformed or internally inconsistent."""


# --- small value types -------------------------------------------------------------------


def _version(text: Any, where: str = "version") -> tuple[int, ...]:
    """A dotted version from the table (gpucheck.versions.parse), or CompatError naming where."""
    try:
        return versions.parse(text)
    except ValueError as exc:
        raise CompatError(f"{where}: {exc}") from None


def cuda_of_variant(name: str) -> tuple[int, int] | None:
    """'cu126' -> (12, 6), 'cu92' -> (9, 2); None for cpu/rocm/xpu."""
    m = re.fullmatch(r"cu(\d+)(\d)", name)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2))


def kind_of_variant(name: str) -> str:
    if name == "cpu":
        return "cpu"
    if name == "xpu":
        return "xpu"
    if re.fullmatch(r"cu\d{2,3}", name):
        return "cuda"
    if re.fullmatch(r"rocm\d+(\.\d+)+", name):
        return "rocm"
    raise CompatError(f"unknown variant name {name!r} (expected cpu, xpu, cuXYZ or rocmX.Y)")


CC = tuple[int, int]


@functools.lru_cache(maxsize=256)
def parse_cc(text: str) -> CC:
    m = re.fullmatch(r"(\d{1,2})\.(\d)", text.strip())
    if not m:
        raise ValueError(f"not a compute capability (X.Y): {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class ArchList:
    """The GPU code in a build: cubins (SASS) per sm_X.y and PTX per compute_X.y."""

    cubins: tuple[CC, ...]
    ptx: tuple[CC, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ArchList:
        """'5.0;6.0;7.0+PTX' (TORCH_CUDA_ARCH_LIST) or 'sm_90 compute_90' (get_arch_list)."""
        cubins: list[CC] = []
        ptx: list[CC] = []
        for raw in re.split(r"[;,\s]+", text.strip()):
            if not raw:
                continue
            m = re.fullmatch(r"(sm|compute)_(\d{2,3})[af]?", raw)
            if m:
                digits = m.group(2)
                cc = (int(digits[:-1]), int(digits[-1]))
                (cubins if m.group(1) == "sm" else ptx).append(cc)
                continue
            m = re.fullmatch(r"(\d{1,2})\.(\d)(\+PTX)?", raw)
            if not m:
                raise CompatError(f"arch list entry not understood: {raw!r} in {text!r}")
            cc = (int(m.group(1)), int(m.group(2)))
            cubins.append(cc)
            if m.group(3):
                ptx.append(cc)
        if not cubins and not ptx:
            raise CompatError(f"empty arch list: {text!r}")
        return cls(tuple(sorted(set(cubins))), tuple(sorted(set(ptx))))

    def without_ptx(self) -> ArchList:
        return ArchList(self.cubins, ())

    def runs_on(self, cc: CC, ptx_ok: bool | None = True) -> bool | None:
        """True if a cubin fits (same major, minor <= the GPU's); else PTX if allowed.

        `ptx_ok` None means "PTX JIT may or may not work" (driver unknown): returns None
        when only PTX would serve.
        """
        if any(c[0] == cc[0] and c[1] <= cc[1] for c in self.cubins):
            return True
        if any(p <= cc for p in self.ptx):
            return ptx_ok
        return False

    def via_ptx_only(self, cc: CC) -> bool:
        return not any(c[0] == cc[0] and c[1] <= cc[1] for c in self.cubins) and any(
            p <= cc for p in self.ptx
        )

    def min_cc(self) -> CC:
        return min(self.cubins + self.ptx)

    def describe(self) -> str:
        parts = [f"sm_{a}{b}" for a, b in self.cubins] + [f"compute_{a}{b}" for a, b in self.ptx]
        return " ".join(parts)


class Status(str, Enum):
    """Whether the sources confirm a build exists."""

    CONFIRMED = "confirmed"
    UNCONFIRMED = "unconfirmed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Variant:
    name: str  # "cu126", "cpu", "rocm7.2", "xpu"
    kind: str  # "cuda" | "rocm" | "xpu" | "cpu"
    status: Status
    platforms: tuple[str, ...]
    unconfirmed_platforms: tuple[str, ...] = ()
    arch: dict[str, ArchList | None] = field(
        default_factory=dict
    )  # platform -> list (None: unknown)
    cudnn: str | None = None
    note: str | None = None

    @property
    def cuda(self) -> tuple[int, int] | None:
        return cuda_of_variant(self.name)

    def arch_for(self, platform: str) -> ArchList | None:
        return self.arch.get(platform)


@dataclass(frozen=True)
class Release:
    version: str  # "2.14.1"
    python: tuple[str, ...]  # confirmed "3.X"
    python_unconfirmed: tuple[str, ...]
    pypi_default: dict[str, str | None]  # platform -> variant of the plain PyPI wheel
    variants: tuple[Variant, ...]
    torchvision: str | None = None
    torchaudio: str | None = None
    note: str | None = None
    glibc: tuple[int, ...] | None = None  # least glibc of its Linux wheels (manylinux tag)
    torchvision_python: tuple[str, ...] | None = None  # None: the torch list without "t"

    @functools.cached_property
    def key(self) -> tuple[int, ...]:
        return versions.key(_version(self.version))

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    def torchvision_for(self, python: str | None) -> str | None:
        """The torchvision to pin for this Python, or None where it has no wheel known."""
        if self.torchvision is None or python is None:
            return self.torchvision
        if self.torchvision_python is not None:
            return self.torchvision if python in self.torchvision_python else None
        if python.endswith("t"):  # free-threaded torchvision wheels are not in the table
            return None
        return self.torchvision if python in self.python else None

    def variant(self, name: str) -> Variant | None:
        for v in self.variants:
            if v.name == name:
                return v
        return None


@dataclass(frozen=True)
class ToolkitRow:
    cuda: tuple[int, int]
    release: str  # "GA", "Update 1"
    linux: tuple[int, ...] | None
    windows: tuple[int, ...] | None


@dataclass(frozen=True)
class GpuEntry:
    vendor: str  # "nvidia" | "amd" | "intel"
    name: str
    words: tuple[str, ...]  # the normalised name, as tokens to find in a GPU's name
    cc: CC | None = None
    gfx: str | None = None
    family: str | None = None
    tegra: bool = False  # a Jetson SoC (JetPack), not a discrete or SBSA GPU


@dataclass(frozen=True)
class CondaBuild:
    platform: str
    cuda: tuple[int, int] | None
    arch: ArchList | None
    tegra: bool = False  # the Jetson (Tegra) build, not the SBSA one


@dataclass(frozen=True)
class CompatTable:
    releases: tuple[Release, ...]  # newest first
    toolkits: tuple[ToolkitRow, ...]
    mvc: dict[int, dict[str, tuple[int, ...]]]  # CUDA major -> {"linux": v, "windows": v}
    gpus: tuple[GpuEntry, ...]
    rocm_archs: dict[str, tuple[str, ...] | None]
    conda_version: str
    conda_builds: tuple[CondaBuild, ...]
    uv_backends: frozenset[str]
    index_url: str
    cudnn_min_sm: tuple[tuple[int, ...], CC]  # the newest floor: (cuDNN version, min CC)
    origin: str = "built-in"
    # every cuDNN floor, oldest first: a cuDNN >= version refuses GPUs below min CC
    cudnn_floors: tuple[tuple[tuple[int, ...], CC], ...] = ()
    first_cuda: dict[CC, tuple[int, int]] = field(default_factory=dict)  # CC -> first CUDA
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- driver minimums ------------------------------------------------------------------

    def ga_driver(self, cuda: tuple[int, int], os_name: str) -> tuple[int, ...] | None:
        """Full-feature minimum: the GA row of that toolkit (None when NVIDIA gives none)."""
        for row in self.toolkits:
            if row.cuda == cuda and row.release == "GA":
                return row.windows if os_name == "windows" else row.linux
        return None

    def full_driver(
        self, cuda: tuple[int, int], os_name: str
    ) -> tuple[tuple[int, ...] | None, bool]:
        """(full-feature minimum, taken from Linux?) for a CUDA X.Y.

        NVIDIA gives no Windows minimum for CUDA 13.x ("N/A": the toolkit no longer bundles a
        Windows driver); the Linux GA minimum of the same branch stands in for it.
        """
        value = self.ga_driver(cuda, os_name)
        if value is None and os_name == "windows":
            linux = self.ga_driver(cuda, "linux")
            if linux is not None:
                return linux, True
        return value, False

    def cudnn_floor(self, cudnn: tuple[int, ...]) -> CC | None:
        """The least compute capability a cuDNN of this version accepts (None: no floor)."""
        floor = None
        for version, cc in self.cudnn_floors or (self.cudnn_min_sm,):
            if versions.key(cudnn) >= versions.key(version):
                floor = cc if floor is None else max(floor, cc)
        return floor

    def gpu_driver(self, cc: CC, os_name: str) -> tuple[tuple[int, int], tuple[int, ...]] | None:
        """(first CUDA for this GPU, the least driver of that CUDA): older cannot drive it."""
        cuda = self.first_cuda.get(cc)
        if cuda is None:
            return None
        driver, _ = self.full_driver(cuda, os_name)
        if driver is None:
            known = [r for r in self.toolkits if r.cuda[0] == cuda[0] and r.release == "GA"]
            driver = self.mvc_driver(cuda[0], os_name) if known else None
        return (cuda, driver) if driver is not None else None

    @property
    def tegra_ccs(self) -> frozenset[CC]:
        """Compute capabilities that only Jetson SoCs have (every GPU listed with it is tegra)."""
        by_cc: dict[CC, set[bool]] = {}
        for g in self.gpus:
            if g.cc is not None:
                by_cc.setdefault(g.cc, set()).add(g.tegra)
        return frozenset(cc for cc, kinds in by_cc.items() if kinds == {True})

    @property
    def max_cc(self) -> CC:
        """The highest compute capability the GPU list knows."""
        return max((g.cc for g in self.gpus if g.cc is not None), default=(12, 1))

    def mvc_driver(self, cuda_major: int, os_name: str) -> tuple[int, ...] | None:
        row = self.mvc.get(cuda_major)
        if row is None:
            return None
        return row["windows" if os_name == "windows" else "linux"]

    def index_url_for(self, variant: str) -> str:
        return self.index_url.format(variant=variant)

    def release(self, version: str) -> Release | None:
        for r in self.releases:
            if r.version == version:
                return r
        minor = ".".join(version.split(".")[:2])
        for r in self.releases:
            if r.minor == minor:
                return r
        return None

    def lookup_gpu(self, name: str) -> GpuEntry | None:
        """Best (longest) table name found in a GPU name, e.g. 'NVIDIA GeForce RTX 4090'."""
        words = gpu_words(name)
        best: GpuEntry | None = None
        for entry in self.gpus:
            if _contains(words, entry.words) and (best is None or len(entry.name) > len(best.name)):
                best = entry
        return best


_NOISE = re.compile(r"\b(nvidia|geforce|tesla|amd|intel)\b")


def normalise_gpu_name(name: str) -> str:
    text = name.lower().replace("(r)", " ").replace("(tm)", " ")
    text = text.replace("-", " ").replace("_", " ")
    text = _NOISE.sub(" ", text)
    return " ".join(text.split())


def gpu_words(name: str) -> tuple[str, ...]:
    """'NVIDIA GeForce RTX 4090' -> ('rtx', '4090'): the tokens that identify a GPU model."""
    return tuple(re.findall(r"[a-z0-9]+", normalise_gpu_name(name)))


def _contains(words: tuple[str, ...], part: tuple[str, ...]) -> bool:
    """Whether `part` occurs in `words` as a run of whole tokens ('rtx 4090' in 'rtx 4090 d')."""
    n = len(part)
    return n > 0 and any(words[i : i + n] == part for i in range(len(words) - n + 1))
