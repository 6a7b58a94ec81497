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
from importlib import resources
from pathlib import Path
from typing import Any

from gpucheck import versions
from gpucheck.compat.model import (
    CC,
    ArchList,
    CompatError,
    CompatTable,
    CondaBuild,
    GpuEntry,
    Release,
    Status,
    ToolkitRow,
    Variant,
    _version,
    cuda_of_variant,
    gpu_words,
    kind_of_variant,
    normalise_gpu_name,
    parse_cc,
)

PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64")
KINDS = ("cuda", "rocm", "xpu", "cpu")
PARTS = ("torch", "drivers", "gpus", "tools")


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
        except UnicodeDecodeError:
            raise CompatError(f"compat file {data} is not UTF-8 text") from None
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
        if not isinstance(v, str) or not re.fullmatch(r"3\.\d+t?", v):
            raise CompatError(f"{where}: not a Python version '3.X' or '3.Xt': {v!r}")
    return tuple(values)


def _cudnn_floors(tdata: dict[str, Any]) -> tuple[tuple[tuple[int, ...], CC], ...]:
    """cuDNN floors, oldest first: `cudnn_min_sm_rules` (a list), or the single older key."""
    rules = tdata.get("cudnn_min_sm_rules")
    if rules is None:
        rules = [_need(tdata, "cudnn_min_sm_rule", dict, "torch")]
    if not isinstance(rules, list) or not rules:
        raise CompatError("torch.cudnn_min_sm_rules: expected a non-empty list")
    out = []
    for i, rule in enumerate(rules):
        where = f"torch.cudnn_min_sm_rules[{i}]"
        _sourced(rule, where)
        out.append(
            (
                _version(_need(rule, "cudnn", str, where), where),
                parse_cc(_need(rule, "min_compute_capability", str, where)),
            )
        )
    return tuple(sorted(out))


def _first_cuda(ddata: dict[str, Any]) -> dict[CC, tuple[int, int]]:
    """The first CUDA toolkit that supports each compute capability (optional block)."""
    block = ddata.get("first_cuda_for_cc")
    if block is None:
        return {}
    _sourced(block, "drivers.first_cuda_for_cc")
    out = {}
    for cc, cuda in _need(block, "rows", dict, "drivers.first_cuda_for_cc").items():
        v = _version(cuda, "drivers.first_cuda_for_cc")
        out[parse_cc(cc)] = (v[0], v[1] if len(v) > 1 else 0)
    return out


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
                entries.append(
                    GpuEntry(
                        vendor, n, gpu_words(n), cc, gfx, g.get("family"), g.get("tegra") is True
                    )
                )
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
        tegra = b.get("tegra", False) is True
        builds.append(CondaBuild(plat, (cuda[0], cuda[1]) if cuda else None, arch, tegra))
    uvb = _need(odata, "uv", dict, "tools")
    _sourced(uvb, "tools.uv")
    uv_backends = frozenset(_need(uvb, "torch_backends", list, "tools.uv"))

    # torch
    index_url = _need(tdata, "index_url", str, "torch")
    if "{variant}" not in index_url:
        raise CompatError("torch.index_url must contain {variant}")
    cudnn_floors = _cudnn_floors(tdata)
    cudnn_rule = cudnn_floors[-1]
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
            try:
                status = Status(_need(v, "status", str, vw))
            except ValueError:
                raise CompatError(f"{vw}: status must be confirmed or unconfirmed") from None
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
                glibc=_version(r["glibc"], f"{where}.glibc") if r.get("glibc") else None,
                torchvision_python=(
                    _python_list(r["torchvision_python"], f"{where}.torchvision_python")
                    if r.get("torchvision_python") is not None
                    else None
                ),
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
        cudnn_floors=cudnn_floors,
        first_cuda=_first_cuda(ddata),
        origin=origin,
        raw=parts,
    )


__all__ = [
    "CC",
    "PLATFORMS",
    "ArchList",
    "CondaBuild",
    "ToolkitRow",
    "gpu_words",
    "CompatError",
    "CompatTable",
    "GpuEntry",
    "Release",
    "Status",
    "Variant",
    "build_table",
    "cuda_of_variant",
    "kind_of_variant",
    "load_table",
    "normalise_gpu_name",
    "parse_cc",
]
