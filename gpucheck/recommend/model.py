"""The typed results of a recommendation: what is wrong with a build, and what to do.

Everything here is frozen data; `to_dict()` is the snapshot's generic `to_plain`, so the
JSON contract (docs/recommend.md) follows the field order and names below.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from gpucheck.recommend.machine import Machine
from gpucheck.snapshot import to_plain


class Action(str, Enum):
    """What the user should do."""

    NONE = "none"
    INSTALL = "install"
    UPGRADE_DRIVER = "upgrade-driver"
    CHANGE_PYTHON = "change-python"
    UNSUPPORTED = "unsupported"

    def __str__(self) -> str:
        return self.value


ACTIONS = tuple(a.value for a in Action)
# A recommendation that cannot be followed on the machine as it is (exit 1).
NOTHING_FITS = (Action.UNSUPPORTED, Action.UPGRADE_DRIVER, Action.CHANGE_PYTHON)


class DriverLevel(str, Enum):
    """How the NVIDIA driver meets one CUDA build's needs."""

    FULL = "full"  # the toolkit's GA minimum: everything, PTX JIT included
    MVC = "mvc"  # only the minor-version-compatibility floor of its CUDA major
    NONE = "none"  # too old to run it
    UNKNOWN = "unknown"  # no driver version known
    NA = "n/a"  # not a CUDA build

    def __str__(self) -> str:
        return self.value


class Kind(str, Enum):
    """Which hard constraint a build fails."""

    PLATFORM = "platform"  # no wheel for this OS/arch (or libc)
    PYTHON = "python"  # no wheel for this Python
    DRIVER = "driver"  # the driver cannot run it (or its PTX)
    ARCH = "arch"  # no kernels for a GPU

    def __str__(self) -> str:
        return self.value


class Cause(str, Enum):
    """Why, in more detail than the kind: what a finding or a fix depends on."""

    NO_WHEEL = "no-wheel"
    GLIBC = "glibc"
    DRIVER_TOO_OLD = "driver-too-old"
    PTX_NEEDS_DRIVER = "ptx-needs-driver"
    NO_KERNELS = "no-kernels"
    CUDNN = "cudnn"
    WRONG_VENDOR = "wrong-vendor"
    CC_UNKNOWN = "cc-unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Problem:
    """One reason a build does not fit: the constraint, the GPU it is about, the cause."""

    kind: Kind
    text: str
    gpu: int | None = None  # the GPU's index, when the problem is about one GPU
    cause: Cause | None = None


@dataclass(frozen=True)
class Misfit:
    """A GC5xx problem of the installed torch, as it appears in the JSON ("problems")."""

    id: str  # GC501..GC505
    severity: str  # "error" | "warn"
    text: str
    gpu: int | None = None
    cause: Cause | None = None


@dataclass(frozen=True)
class InstalledFit:
    """Whether the installed torch fits this machine."""

    version: str
    variant: str | None
    fits: bool | None  # None: the table cannot say
    problems: tuple[Misfit, ...] = ()


@dataclass(frozen=True)
class Alternative:
    torch: str | None
    variant: str | None
    why: str
    pip: str | None


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    """The answer. Field order is the JSON key order of the contract."""

    variant: str | None = None  # None: nothing to install (and no commands)
    torch: str | None = None
    build: str | None = None  # "2.14.1+cu126"
    index_url: str | None = None
    pip: str | None = None
    uv: str | None = None
    conda: str | None = None
    conda_torch: str | None = None  # the conda-forge pytorch version the conda line gives
    torchvision: str | None = None
    torchaudio: str | None = None
    action: Action
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    driver_required: str | None = None  # the least driver for this build (MVC floor)
    driver_full_feature: str | None = None
    python_required: str | None = None  # when action is change-python: the Python to use
    installed: InstalledFit | None = None
    alternatives: tuple[Alternative, ...] = ()
    machine: Machine | None = None
    table: str = "built-in"

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)
