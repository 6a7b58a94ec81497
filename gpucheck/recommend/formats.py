"""A recommendation as a project file: pure functions Recommendation -> text.

    render(rec, fmt) -> str      fmt in FORMATS; raises NothingToWrite when there is no build

`pip` is the plain command output of `gpucheck recommend` and is not produced here. The
other formats pin the same build in the file a team commits:

- `uv-project`: a pyproject.toml block. uv's `--torch-backend` works only in the `uv pip`
  interface, not in `uv lock`/`uv sync` (astral-sh/uv#21535), so a project names the PyTorch
  index itself: an explicit `[[tool.uv.index]]` and `[tool.uv.sources]` entries with an
  environment marker, so that other operating systems keep PyPI's wheels.
- `requirements`: a requirements.txt for `pip install -r`.
- `pixi` / `conda-env`: a pixi.toml / environment.yml with conda-forge's `pytorch-gpu` (or
  `pytorch-cpu`) and a `cuda-version` pin, taken from the recommendation's conda line; where
  conda-forge has no build that fits, the PyPI wheels from the PyTorch index instead.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from gpucheck.recommend.evaluate import PLATFORM_WORDS

FORMATS = ("pip", "uv-project", "pixi", "requirements", "conda-env")

# the conda subdir (pixi platform) of each table platform
CONDA_SUBDIR = {
    "linux-x86_64": "linux-64",
    "linux-aarch64": "linux-aarch64",
    "windows-x86_64": "win-64",
    "macos-arm64": "osx-arm64",
    "macos-x86_64": "osx-64",
}
# PEP 508 marker of each OS (sys_platform values)
SYS_PLATFORM = {"linux": "linux", "windows": "win32", "macos": "darwin"}
UV_ISSUE = "astral-sh/uv#21535"
# Wheels a project pins next to torch, in this order (each only when the recommendation has one)
COMPANIONS = ("torchvision", "torchaudio")


class NothingToWrite(Exception):
    """The recommendation has no build to write down (one line: why)."""


@dataclass(frozen=True)
class Target:
    """What a project file is written for, read from the recommendation's machine."""

    os: str | None
    arch: str | None
    python: str | None  # "3.12", or "3.13t" for a free-threaded build

    @property
    def platform(self) -> str | None:
        if not self.os or not self.arch:
            return None
        arch = self.arch
        if self.os == "macos":
            arch = "arm64" if arch in ("arm64", "aarch64") else arch
        elif arch == "arm64":
            arch = "aarch64"
        return f"{self.os}-{arch}"

    @property
    def python_base(self) -> str | None:
        return self.python[:-1] if self.python and self.python.endswith("t") else self.python

    @property
    def free_threaded(self) -> bool:
        return bool(self.python and self.python.endswith("t"))


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def target_of(rec: Any) -> Target:
    """The machine's OS, CPU and Python, whether `rec.machine` is a dict or a Machine.

    With `change-python` the file is for the Python the build needs, not the machine's."""
    machine = rec.machine
    python = _field(machine, "python")
    if _action(rec) == "change-python" and getattr(rec, "python_required", None):
        python = rec.python_required
    return Target(_field(machine, "os"), _field(machine, "arch"), python)


def _action(rec: Any) -> str:
    return str(getattr(rec.action, "value", rec.action))


def pins(rec: Any) -> list[tuple[str, str]]:
    """[(name, version)] of torch and the companions the recommendation pins."""
    out = [("torch", rec.torch)]
    for name in COMPANIONS:
        version = getattr(rec, name, None)
        if version:
            out.append((name, version))
    return out


def check_installable(rec: Any) -> None:
    """Raise NothingToWrite when the recommendation names no build."""
    if rec.variant is None or rec.torch is None:
        action = _action(rec)
        why = {
            "unsupported": "no PyTorch build fits this machine",
        }.get(action, f"the recommendation ({action}) names no PyTorch build")
        raise NothingToWrite(f"{why}: nothing to write (see `gpucheck recommend` for why)")


def precondition(rec: Any) -> str | None:
    """What must change on the machine before the file's build works, or None."""
    action = _action(rec)
    if action == "upgrade-driver":
        need = rec.driver_full_feature or rec.driver_required
        return f"upgrade the NVIDIA driver to >= {need}" if need else None
    if action == "change-python" and rec.python_required:
        return f"use Python {rec.python_required} (this build has no wheel for this Python)"
    return None


def header(rec: Any, fmt: str, what: str | None = None) -> list[str]:
    """Comment lines that say what the file pins, for which machine, and what to do first."""
    t = target_of(rec)
    where = PLATFORM_WORDS.get(t.platform or "", t.platform or "this machine")
    if t.python:
        where += f", Python {t.python}"
    lines = [
        f"# PyTorch {what or rec.build or rec.torch} for {where}",
        f"# written by `gpucheck recommend --format {fmt}`",
    ]
    first = precondition(rec)
    if first:
        lines.append(f"# before installing: {first}")
    return lines


# --- pyproject.toml for uv -------------------------------------------------------------


def index_name(variant: str) -> str:
    """The [[tool.uv.index]] name: letters, digits, '-', '_' and '.' are allowed by uv."""
    return f"pytorch-{variant}"


def uv_marker(rec: Any, index_platforms: tuple[str, ...] | None = None) -> str:
    """The marker of the platforms that take this build from the PyTorch index.

    Only the recommendation's own OS is routed to the index; every other OS keeps PyPI (CPU
    on Windows, MPS on macOS, PyPI's default on Linux). On Linux both CPU types take the
    index when it has wheels for both (`index_platforms`, from the table), else only this one.
    """
    t = target_of(rec)
    sys_platform = SYS_PLATFORM.get(t.os or "linux", "linux")
    marker = f"sys_platform == '{sys_platform}'"
    if t.os == "linux" and t.platform and index_platforms is not None:
        both = {"linux-x86_64", "linux-aarch64"} <= set(index_platforms)
        if not both:
            machine = t.platform.split("-", 1)[1]
            marker += f" and platform_machine == '{machine}'"
    return marker


def _toml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string for this text


def uv_project(rec: Any, *, index_platforms: tuple[str, ...] | None = None) -> str:
    check_installable(rec)
    lines = header(rec, "uv-project")
    lines.append("# merge into pyproject.toml; then `uv lock` and `uv sync`")
    deps = [f"{name}=={version}" for name, version in pins(rec)]
    if rec.index_url:
        lines.append(
            f"# `uv pip --torch-backend` does not work in `uv lock`/`uv sync` ({UV_ISSUE}):"
        )
        lines.append("# the index is named here; other platforms keep PyPI's wheels")
    else:
        lines.append("# PyPI's wheel is this build here: no extra index is needed")
    lines.append("")
    lines.append("[project]")
    lines.append("dependencies = [")
    lines.extend(f"    {_toml_str(d)}," for d in deps)
    lines.append("]")
    if rec.index_url:
        name = index_name(rec.variant)
        marker = uv_marker(rec, index_platforms)
        lines += [
            "",
            "[[tool.uv.index]]",
            f"name = {_toml_str(name)}",
            f"url = {_toml_str(rec.index_url)}",
            "explicit = true",
            "",
            "[tool.uv.sources]",
        ]
        for pkg, _version in pins(rec):
            lines.append(f"{pkg} = [{{ index = {_toml_str(name)}, marker = {_toml_str(marker)} }}]")
    return "\n".join(lines) + "\n"


# --- requirements.txt --------------------------------------------------------------------


def requirements(rec: Any) -> str:
    """`--index-url`, not `--extra-index-url`: with an extra index pip takes the highest
    version from either, and PyPI's plain `torch==X` is a different build with the same pin."""
    check_installable(rec)
    lines = header(rec, "requirements")
    if rec.index_url:
        lines.append("# --index-url applies to every line of this file: keep it a file of its own")
        lines.append("# (pip install -r requirements-torch.txt), next to your other requirements")
        lines.append(f"--index-url {rec.index_url}")
    lines += [f"{name}=={version}" for name, version in pins(rec)]
    return "\n".join(lines) + "\n"


# --- conda-forge: pixi.toml and environment.yml -----------------------------------------


@dataclass(frozen=True)
class CondaSpec:
    name: str
    op: str  # "" (any), "=" (conda fuzzy: X.*), "==", ">=", "<", ...
    version: str = ""

    def matchspec(self) -> str:
        return f"{self.name}{self.op}{self.version}"

    def pixi(self) -> str:
        if not self.op:
            return "*"
        if self.op == "=":
            return self.version if self.version.endswith("*") else f"{self.version}.*"
        return f"{self.op}{self.version}"


_OPS = ("==", ">=", "<=", "!=", "=", ">", "<")


def parse_conda_spec(text: str) -> CondaSpec:
    for i, ch in enumerate(text):
        if ch in "=<>!":
            for op in _OPS:
                if text.startswith(op, i):
                    return CondaSpec(text[:i].strip(), op, text[i + len(op) :].strip())
    return CondaSpec(text.strip(), "")


def conda_specs(rec: Any) -> list[CondaSpec] | None:
    """The package specs of the recommendation's conda-forge line, or None when it has none.

    'conda install -c conda-forge pytorch-gpu cuda-version=12.9' ->
    [pytorch-gpu, cuda-version=12.9], plus a pin of pytorch-gpu/-cpu to `conda_torch`
    unless the line already pins pytorch.
    """
    if not rec.conda:
        return None
    words = shlex.split(rec.conda)
    specs: list[CondaSpec] = []
    skip = False
    for word in words[2:] if words[:2] in (["conda", "install"], ["mamba", "install"]) else words:
        if skip:
            skip = False
            continue
        if word in ("-c", "--channel", "-n", "--name"):
            skip = True
            continue
        if word.startswith("-"):
            continue
        specs.append(parse_conda_spec(word))
    if not any(s.name in ("pytorch-gpu", "pytorch-cpu", "pytorch") for s in specs):
        return None
    pinned = any(s.op and s.name in ("pytorch", "pytorch-gpu", "pytorch-cpu") for s in specs)
    conda_torch = getattr(rec, "conda_torch", None)
    if conda_torch and not pinned:
        specs = [
            CondaSpec(s.name, "=", conda_torch) if s.name in ("pytorch-gpu", "pytorch-cpu") else s
            for s in specs
        ]
    return specs


def _cuda_major(specs: list[CondaSpec]) -> str | None:
    """'12' from cuda-version=12.9: what pixi is told the driver supports (__cuda)."""
    for s in specs:
        if s.name == "cuda-version" and s.version:
            return s.version.split(".")[0]
    return None


def _conda_python(t: Target) -> list[CondaSpec]:
    if not t.python_base:
        return [CondaSpec("python", "")]
    out = [CondaSpec("python", "=", t.python_base)]
    if t.free_threaded:
        out.append(CondaSpec("python-freethreading", ""))
    return out


def _conda_deps(
    t: Target, specs: list[CondaSpec] | None
) -> tuple[list[CondaSpec], list[CondaSpec]]:
    """(python specs, the conda line's other specs): one spec per package, the machine's
    Python first (a conda line may pin python itself; its pin wins when the machine's is unknown)."""
    rest = list(specs or ())
    line_py = [s for s in rest if s.name in ("python", "python-freethreading")]
    python = _conda_python(t) if t.python_base or not line_py else line_py
    names = {s.name for s in python}
    return python, [s for s in rest if s.name not in names and s not in line_py]


def conda_build_words(rec: Any, specs: list[CondaSpec] | None) -> str | None:
    """'2.13.0 from conda-forge, CUDA 12.9' for the header; None for the PyPI fallback."""
    if specs is None:
        return None
    version = getattr(rec, "conda_torch", None)
    cuda = next((s.version for s in specs if s.name == "cuda-version" and s.version), None)
    words = f"{version} " if version else ""
    words += "from conda-forge"
    if cuda:
        words += f", CUDA {cuda}"
    elif any(s.name == "pytorch-cpu" for s in specs):
        words += ", CPU only"
    return words


def _override_note(specs: list[CondaSpec]) -> list[str]:
    cuda = next((s.version for s in specs if s.name == "cuda-version" and s.version), None)
    if not any(s.name == "pytorch-gpu" for s in specs):
        return []
    value = cuda or "12"
    return [
        "# conda-forge's CUDA builds need a visible NVIDIA driver (__cuda); to solve on a",
        f"# machine without one (CI): CONDA_OVERRIDE_CUDA={value} before the install command",
    ]


def pixi(rec: Any, *, name: str = "torch-project") -> str:
    check_installable(rec)
    t = target_of(rec)
    specs = conda_specs(rec)
    subdir = CONDA_SUBDIR.get(t.platform or "", "linux-64")
    lines = header(rec, "pixi", conda_build_words(rec, specs))
    if specs is None:
        lines.append("# conda-forge has no build that fits: PyPI wheels through pixi's uv")
    else:
        lines.append(f"# conda-forge's pytorch (the pip build would be {rec.build})")
        lines += _override_note(specs)
    lines += [
        "",
        "[workspace]",
        f"name = {_toml_str(name)}",
        'channels = ["conda-forge"]',
        f"platforms = [{_toml_str(subdir)}]",
    ]
    major = _cuda_major(specs) if specs else None
    if major:
        # deprecated in pixi >= 0.71 for `platforms = [{ platform = ..., cuda = ... }]`,
        # still read by it and understood by every older pixi
        lines += ["", "[system-requirements]", f"cuda = {_toml_str(major)}"]
    lines += ["", "[dependencies]"]
    python, others = _conda_deps(t, specs)
    for s in python:
        lines.append(f"{s.name} = {_toml_str(s.pixi())}")
    if specs is not None:
        for s in others:
            lines.append(f"{s.name} = {_toml_str(s.pixi())}")
        lines.append('torchvision = "*"  # conda-forge builds it against the pytorch above')
    else:
        lines += ["", "[pypi-dependencies]"]
        for pkg, version in pins(rec):
            entry = f"version = {_toml_str('==' + version)}"
            if rec.index_url:
                entry += f", index = {_toml_str(rec.index_url)}"
            lines.append(f"{pkg} = {{ {entry} }}")
    return "\n".join(lines) + "\n"


def _yaml_item(text: str) -> str:
    # match specs and pip lines are plain ASCII; quote anything YAML could misread
    if text and all(c.isalnum() or c in "-_.=<>*/:" for c in text) and text[0].isalnum():
        return text
    return json.dumps(text)


def conda_env(rec: Any, *, name: str | None = None) -> str:
    check_installable(rec)
    t = target_of(rec)
    specs = conda_specs(rec)
    cuda = next((s.version for s in specs or () if s.name == "cuda-version" and s.version), None)
    if specs is None:
        env_name = name or f"torch-{rec.variant}"
    else:
        env_name = name or (f"torch-cuda{cuda}" if cuda else "torch-cpu")
    lines = header(rec, "conda-env", conda_build_words(rec, specs))
    lines.append("# conda env create -f environment.yml")
    if specs is None:
        lines.append("# conda-forge has no build that fits: PyPI wheels through pip")
    else:
        lines.append(f"# conda-forge's pytorch (the pip build would be {rec.build})")
        lines += _override_note(specs)
    lines += [
        f"name: {_yaml_item(env_name)}",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
    ]
    python, others = _conda_deps(t, specs)
    lines += [f"  - {_yaml_item(s.matchspec())}" for s in python]
    if specs is not None:
        lines += [f"  - {_yaml_item(s.matchspec())}" for s in others]
        lines.append("  - torchvision")
    else:
        lines += ["  - pip", "  - pip:"]
        if rec.index_url:
            lines.append(f"      - {_yaml_item('--index-url ' + rec.index_url)}")
        lines += [f"      - {_yaml_item(f'{n}=={v}')}" for n, v in pins(rec)]
    return "\n".join(lines) + "\n"


def render(rec: Any, fmt: str, *, index_platforms: tuple[str, ...] | None = None) -> str:
    """The file for `fmt` (not `pip`: that is the command output). Raises NothingToWrite."""
    if fmt == "uv-project":
        return uv_project(rec, index_platforms=index_platforms)
    if fmt == "requirements":
        return requirements(rec)
    if fmt == "pixi":
        return pixi(rec)
    if fmt == "conda-env":
        return conda_env(rec)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def index_platforms_of(table: Any, rec: Any) -> tuple[str, ...] | None:
    """The platforms the table says the recommended variant's index has wheels for."""
    try:
        release = table.release(rec.torch) if rec.torch else None
        variant = release.variant(rec.variant) if release and rec.variant else None
    except (AttributeError, TypeError, ValueError):
        return None
    return tuple(variant.platforms) if variant is not None else None


def write_format(rec: Any, fmt: str, table: Any = None) -> int:
    """`gpucheck recommend --format FMT`: the file on stdout; exit code as documented.

    0: the file is written and its build installs as is. 1: nothing fits as is: either no
    build at all (one line on stderr, nothing on stdout) or the file's build needs the driver
    or Python change that a line on stderr names (the file is still written).
    """
    import sys

    try:
        text = render(rec, fmt, index_platforms=index_platforms_of(table, rec))
    except NothingToWrite as exc:
        print(f"gpucheck: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    first = precondition(rec)
    if first:
        print(f"gpucheck: {first} first: the file pins the build for after that", file=sys.stderr)
    return 1 if _action(rec) in ("upgrade-driver", "change-python", "unsupported") else 0
