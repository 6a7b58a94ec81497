"""The one parser and formatter of dotted driver, toolkit and torch versions.

A version is a tuple of ints: "550.54.14" -> (550, 54, 14). `parse` is strict (table data,
flags); `lenient` reads the leading number of probed text and gives None on junk. NVIDIA
writes every part after the first with at least two digits (450.80.02, 570.26): `nvidia`.
"""

from __future__ import annotations

import functools
import re

Version = tuple[int, ...]

_DOTTED = re.compile(r"\d+(\.\d+)*")
_LEADING = re.compile(r"\s*([0-9]+(?:\.[0-9]+)*)")


@functools.lru_cache(maxsize=1024)  # the same few dozen versions are read for every build
def parse(text: str) -> Version:
    """'550.54.14' -> (550, 54, 14); leading zeros are fine ('450.80.02'). ValueError else."""
    if not isinstance(text, str) or not _DOTTED.fullmatch(text.strip()):
        raise ValueError(f"not a dotted version: {text!r}")
    return tuple(int(p) for p in text.strip().split("."))


def lenient(text: str | None) -> Version | None:
    """The leading dotted number of probed text ('12.8 (bundled)' -> (12, 8)); None on junk."""
    if not text:
        return None
    m = _LEADING.match(text)
    if not m:
        return None
    return tuple(int(p) for p in m.group(1).split("."))


def key(v: Version, width: int = 4) -> Version:
    """Padded with zeros so that (12, 8) and (12, 8, 0) compare equal."""
    return tuple(v) + (0,) * (width - len(v))


def major_minor(text: str | None) -> tuple[int, int] | None:
    """'12.8' -> (12, 8), '13' -> (13, 0); None on junk."""
    v = lenient(text)
    if v is None:
        return None
    return (v[0], v[1] if len(v) > 1 else 0)


def driver_core(text: str | None) -> Version | None:
    """A driver version as the kernel module prints it.

    NVML's own version string carries the CUDA major in front ("12.550.54.14"); drop it so
    that it compares with /proc/driver/nvidia/version ("550.54.14").
    """
    v = lenient(text)
    if v is not None and len(v) >= 3 and 10 <= v[0] < 100 <= v[1]:
        return v[1:]
    return v


def plain(v: Version) -> str:
    """(12, 8) -> '12.8'."""
    return ".".join(str(p) for p in v)


def nvidia(v: Version | None) -> str:
    """NVIDIA's spelling of a driver version: (450, 80, 2) -> '450.80.02'; None -> '?'."""
    if v is None:
        return "?"
    return ".".join([str(v[0])] + [f"{p:02d}" for p in v[1:]])


def cc_text(cc: tuple[int, int]) -> str:
    """(8, 6) -> '8.6' (a compute capability or a CUDA X.Y)."""
    return f"{cc[0]}.{cc[1]}"
