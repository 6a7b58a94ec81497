"""Compatibility knowledge as data: drivers, torch releases, GPUs, conda-forge and uv.

The JSON files next to this module are the built-in table (newest first, every block with
its `source` and `verified` date). `load_table()` reads and validates them once; a user can
point at a newer table with `gpucheck recommend --compat FILE`, a single JSON object whose
keys `torch`, `drivers`, `gpus`, `tools` replace the built-in parts they name.

A fact the sources could not confirm is `null` (or `status: "unconfirmed"`) in the data; the
recommendation treats it as unknown, never as a guess.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gpucheck import versions

PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64")
KINDS = ("cuda", "rocm", "xpu", "cpu")
PARTS = ("torch", "drivers", "gpus", "tools")


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


@dataclass(frozen=True)
class Variant:
    name: str  # "cu126", "cpu", "rocm7.2", "xpu"
    kind: str  # "cuda" | "rocm" | "xpu" | "cpu"
    status: str  # "confirmed" | "unconfirmed"
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

    @property
    def key(self) -> tuple[int, ...]:
        return versions.key(_version(self.version))

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

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


@dataclass(frozen=True)
class CondaBuild:
    platform: str
    cuda: tuple[int, int] | None
    arch: ArchList | None


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
    cudnn_min_sm: tuple[tuple[int, ...], CC]  # (cuDNN version, min CC)
    origin: str = "built-in"
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- driver minimums ------------------------------------------------------------------

    def ga_driver(self, cuda: tuple[int, int], os_name: str) -> tuple[int, ...] | None:
        """Full-feature minimum: the GA row of that toolkit (None when NVIDIA gives none)."""
        for row in self.toolkits:
            if row.cuda == cuda and row.release == "GA":
                return row.windows if os_name == "windows" else row.linux
        return None

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


# --- loading and validation --------------------------------------------------------------


def _read_builtin(part: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(f"{part}.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _builtin() -> CompatTable:
    return build_table({p: _read_builtin(p) for p in PARTS}, origin="built-in")


def load_table(data: str | Path | None = None, *, source: str | None = None) -> CompatTable:
    """The built-in table (loaded and validated once), or one with parts replaced.

    `data` is a path to a JSON file, or the JSON text itself when `source` (the name to
    use in messages) is given or the string starts with '{'. The file's top-level keys
    `torch`, `drivers`, `gpus`, `tools` replace the built-in parts they name.
    """
    if data is None:
        return _builtin()
    if source is not None or (isinstance(data, str) and data.lstrip().startswith("{")):
        text, origin = str(data), source or "compat table"
    else:
        origin = str(data)
        try:
            text = Path(data).read_text(encoding="utf-8")
        except OSError as exc:
            raise CompatError(f"cannot read compat file {data}: {exc.strerror or exc}") from None
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CompatError(f"{origin} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict) or not any(k in parsed for k in PARTS):
        raise CompatError(f"{origin} must be a JSON object with at least one of {', '.join(PARTS)}")
    parts = {p: (parsed[p] if p in parsed else _read_builtin(p)) for p in PARTS}
    return build_table(parts, origin=origin)


def _need(obj: Any, key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise CompatError(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, typ):
        raise CompatError(f"{where}.{key}: expected {typ}, got {type(value).__name__}")
    return value


def _sourced(block: Any, where: str) -> None:
    _need(block, "source", str, where)
    if "verified" not in block:
        raise CompatError(f"{where}: missing 'verified' (a date, or null when not verified)")
    v = block["verified"]
    if v is not None and not (isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)):
        raise CompatError(f"{where}.verified: expected YYYY-MM-DD or null, got {v!r}")


def _python_list(values: Any, where: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise CompatError(f"{where}: expected a list of '3.X'")
    for v in values:
        if not isinstance(v, str) or not re.fullmatch(r"3\.\d+", v):
            raise CompatError(f"{where}: not a Python version '3.X': {v!r}")
    return tuple(values)


def build_table(parts: dict[str, Any], origin: str = "built-in") -> CompatTable:
    """Parse and validate the four parts; raise CompatError naming the first problem."""
    try:
        return _build(parts, origin)
    except CompatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CompatError(f"malformed compat table ({origin}): {exc}") from None


def _build(parts: dict[str, Any], origin: str) -> CompatTable:
    for p in PARTS:
        if not isinstance(parts.get(p), dict):
            raise CompatError(f"{origin}: part {p!r} must be a JSON object")
    tdata, ddata, gdata, odata = (parts[p] for p in PARTS)

    # drivers
    tk = _need(ddata, "toolkits", dict, "drivers")
    _sourced(tk, "drivers.toolkits")
    toolkits = []
    for i, row in enumerate(_need(tk, "rows", list, "drivers.toolkits")):
        where = f"drivers.toolkits.rows[{i}]"
        if not (isinstance(row, list) and len(row) == 4):
            raise CompatError(f"{where}: expected [cuda, release, linux, windows]")
        cuda = _version(row[0], where)
        if len(cuda) != 2:
            raise CompatError(f"{where}: CUDA version must be X.Y")
        lin = _version(row[2], where) if row[2] is not None else None
        win = _version(row[3], where) if row[3] is not None else None
        toolkits.append(ToolkitRow((cuda[0], cuda[1]), str(row[1]), lin, win))
    keys = [(r.cuda, r.release) for r in toolkits]
    if len(set(keys)) != len(keys):
        raise CompatError("drivers.toolkits: duplicate (cuda, release) rows")
    ga = [r for r in toolkits if r.release == "GA"]
    if [r.cuda for r in ga] != sorted((r.cuda for r in ga), reverse=True):
        raise CompatError("drivers.toolkits: rows must be newest first")
    mv = _need(ddata, "minor_version_compat", dict, "drivers")
    _sourced(mv, "drivers.minor_version_compat")
    mvc: dict[int, dict[str, tuple[int, ...]]] = {}
    for i, row in enumerate(_need(mv, "rows", list, "drivers.minor_version_compat")):
        where = f"drivers.minor_version_compat.rows[{i}]"
        major = _need(row, "cuda_major", int, where)
        mvc[major] = {
            "linux": _version(_need(row, "linux", str, where), where),
            "windows": _version(_need(row, "windows", str, where), where),
        }
    for r in ga:  # a GA minimum is never below its family's MVC floor (X.0 may be: 11.0)
        floor = mvc.get(r.cuda[0])
        if (
            floor
            and r.cuda[1] >= 1
            and r.linux
            and versions.key(r.linux) < versions.key(floor["linux"])
        ):
            raise CompatError(f"drivers: CUDA {r.cuda} GA Linux minimum is below the MVC floor")

    # gpus
    entries: list[GpuEntry] = []
    for vendor in ("nvidia", "amd", "intel"):
        block = _need(gdata, vendor, dict, "gpus")
        _sourced(block, f"gpus.{vendor}")
        for i, g in enumerate(_need(block, "gpus", list, f"gpus.{vendor}")):
            where = f"gpus.{vendor}.gpus[{i}]"
            names = _need(g, "names", list, where)
            cc = parse_cc(_need(g, "cc", str, where)) if vendor == "nvidia" else None
            gfx = _need(g, "gfx", str, where) if vendor == "amd" else None
            if gfx is not None and not re.fullmatch(r"gfx[0-9a-f]{3,4}", gfx):
                raise CompatError(f"{where}: not a gfx target: {gfx!r}")
            for n in names:
                if not isinstance(n, str) or not n.strip():
                    raise CompatError(f"{where}: empty GPU name")
                entries.append(GpuEntry(vendor, n, gpu_words(n), cc, gfx, g.get("family")))
    rb = _need(gdata, "rocm_index_archs", dict, "gpus")
    _sourced(rb, "gpus.rocm_index_archs")
    rocm_archs: dict[str, tuple[str, ...] | None] = {}
    for name, archs in _need(rb, "archs", dict, "gpus.rocm_index_archs").items():
        if kind_of_variant(name) != "rocm":
            raise CompatError(f"gpus.rocm_index_archs: {name!r} is not a ROCm index")
        if archs is None:
            rocm_archs[name] = None
            continue
        items = tuple(archs.split())
        for a in items:
            if not re.fullmatch(r"gfx[0-9a-f]{3,4}", a):
                raise CompatError(f"gpus.rocm_index_archs.{name}: not a gfx target: {a!r}")
        rocm_archs[name] = items

    # tools
    cf = _need(odata, "conda_forge", dict, "tools")
    _sourced(cf, "tools.conda_forge")
    builds = []
    for i, b in enumerate(_need(cf, "builds", list, "tools.conda_forge")):
        where = f"tools.conda_forge.builds[{i}]"
        plat = _need(b, "platform", str, where)
        if plat not in PLATFORMS:
            raise CompatError(f"{where}: unknown platform {plat!r}")
        cuda = _version(b["cuda"], where) if b.get("cuda") else None
        arch = ArchList.parse(b["arch"]) if b.get("arch") else None
        if cuda is not None and arch is None:
            raise CompatError(f"{where}: a CUDA build needs an arch list")
        builds.append(CondaBuild(plat, (cuda[0], cuda[1]) if cuda else None, arch))
    uvb = _need(odata, "uv", dict, "tools")
    _sourced(uvb, "tools.uv")
    uv_backends = frozenset(_need(uvb, "torch_backends", list, "tools.uv"))

    # torch
    index_url = _need(tdata, "index_url", str, "torch")
    if "{variant}" not in index_url:
        raise CompatError("torch.index_url must contain {variant}")
    rule = _need(tdata, "cudnn_min_sm_rule", dict, "torch")
    _sourced(rule, "torch.cudnn_min_sm_rule")
    cudnn_rule = (
        _version(_need(rule, "cudnn", str, "torch.cudnn_min_sm_rule")),
        parse_cc(_need(rule, "min_compute_capability", str, "torch.cudnn_min_sm_rule")),
    )
    releases: list[Release] = []
    for i, r in enumerate(_need(tdata, "releases", list, "torch")):
        where = f"torch.releases[{i}]"
        _sourced(r, where)
        version = _need(r, "version", str, where)
        _version(version, where)
        where = f"torch {version}"
        variants: list[Variant] = []
        for j, v in enumerate(_need(r, "variants", list, where)):
            vw = f"{where} variants[{j}]"
            name = _need(v, "name", str, vw)
            kind = kind_of_variant(name)
            vw = f"{where} {name}"
            status = _need(v, "status", str, vw)
            if status not in ("confirmed", "unconfirmed"):
                raise CompatError(f"{vw}: status must be confirmed or unconfirmed")
            _need(v, "source", str, vw)
            plats = tuple(_need(v, "platforms", list, vw))
            unplats = tuple(v.get("unconfirmed_platforms", ()))
            for p in plats + unplats:
                if p not in PLATFORMS:
                    raise CompatError(f"{vw}: unknown platform {p!r}")
            arch: dict[str, ArchList | None] = {}
            if kind == "cuda":
                if "arch" not in v or "linux-x86_64" not in v["arch"]:
                    raise CompatError(
                        f"{vw}: a CUDA variant needs arch['linux-x86_64'] (null if unknown)"
                    )
                for p, text in v["arch"].items():
                    if p not in PLATFORMS:
                        raise CompatError(f"{vw}: arch for unknown platform {p!r}")
                    arch[p] = ArchList.parse(text) if text is not None else None
                if "windows-x86_64" in plats and "windows-x86_64" not in arch:
                    base = arch["linux-x86_64"]
                    arch["windows-x86_64"] = base.without_ptx() if base is not None else None
                if status == "confirmed" and arch["linux-x86_64"] is None:
                    pass  # an unknown arch list on a confirmed index: arch fit stays unknown
            cudnn = v.get("cudnn")
            if cudnn is not None:
                _version(cudnn, vw)
            if kind == "rocm" and name not in rocm_archs:
                raise CompatError(f"{vw}: no entry in gpus.rocm_index_archs (null if unknown)")
            if kind == "cuda":
                cu = cuda_of_variant(name)
                if cu not in {t.cuda for t in toolkits}:
                    raise CompatError(f"{vw}: CUDA {cu[0]}.{cu[1]} has no driver row")
                if cu[0] not in mvc:
                    raise CompatError(f"{vw}: no minor-version-compat floor for CUDA {cu[0]}.x")
            variants.append(Variant(name, kind, status, plats, unplats, arch, cudnn, v.get("note")))
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise CompatError(f"{where}: duplicate variant names")
        pypi = _need(r, "pypi_default", dict, where)
        for p, vname in pypi.items():
            if p not in PLATFORMS:
                raise CompatError(f"{where}.pypi_default: unknown platform {p!r}")
            if vname is not None:
                kind_of_variant(vname)
        releases.append(
            Release(
                version=version,
                python=_python_list(_need(r, "python", list, where), f"{where}.python"),
                python_unconfirmed=_python_list(r.get("python_unconfirmed", []), where),
                pypi_default=dict(pypi),
                variants=tuple(variants),
                torchvision=r.get("torchvision"),
                torchaudio=r.get("torchaudio"),
                note=r.get("note"),
            )
        )
    if not releases:
        raise CompatError("torch.releases is empty")
    if [r.key for r in releases] != sorted((r.key for r in releases), reverse=True):
        raise CompatError("torch.releases must be newest first")
    if len({r.minor for r in releases}) != len(releases):
        raise CompatError("torch.releases: one entry per minor release")
    return CompatTable(
        releases=tuple(releases),
        toolkits=tuple(toolkits),
        mvc=mvc,
        gpus=tuple(entries),
        rocm_archs=rocm_archs,
        conda_version=_need(cf, "pytorch", str, "tools.conda_forge"),
        conda_builds=tuple(builds),
        uv_backends=uv_backends,
        index_url=index_url,
        cudnn_min_sm=cudnn_rule,
        origin=origin,
        raw=parts,
    )


__all__ = [
    "ArchList",
    "CompatError",
    "CompatTable",
    "GpuEntry",
    "Release",
    "Variant",
    "build_table",
    "cuda_of_variant",
    "kind_of_variant",
    "load_table",
    "normalise_gpu_name",
    "parse_cc",
]
