"""Torch as its installed files describe it: package metadata and torch/version.py, no import."""

from __future__ import annotations

import importlib.metadata as md
import os
import re

from gpucheck.probe._util import read_text
from gpucheck.probe.parsers import local_tag, parse_torch_version_py
from gpucheck.probe.pyenv import PyEnv
from gpucheck.snapshot import Package, Torch

SOURCE = "importlib.metadata"


def _requirement_name(requirement: str) -> str:
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return m.group(1) if m else ""


def _find(name: str, path: list[str]) -> md.Distribution | None:
    # distributions() scans in sys.path order; the first match is the one `import` would get.
    return next(iter(md.distributions(name=name, path=path)), None)


def probe_torch_static(pyenv: PyEnv) -> Torch:
    """Installed torch of the inspected interpreter; never imports it."""
    if pyenv.error:
        return Torch(error=pyenv.error, source=SOURCE)
    path = list(pyenv.path)
    try:
        dist = _find("torch", path)
    except (OSError, ValueError) as exc:
        return Torch(error=f"reading package metadata failed: {exc}", source=SOURCE)
    if dist is None:
        return Torch(installed=False, source=SOURCE)
    version = dist.version
    location = os.path.join(str(dist.locate_file("")), "torch")
    version_py = parse_torch_version_py(read_text(os.path.join(location, "version.py")) or "")
    wheels = []
    for requirement in dist.requires or ():
        name = _requirement_name(requirement)
        if not name.lower().startswith("nvidia-"):
            continue
        try:
            req_dist = _find(name, path)
        except (OSError, ValueError):
            req_dist = None
        if req_dist is not None:
            wheels.append(Package(name=req_dist.metadata["Name"] or name, version=req_dist.version))
    try:
        vision = _find("torchvision", path)
    except (OSError, ValueError):
        vision = None
    error = None
    if not version_py:
        error = "torch/version.py missing or unreadable"
    return Torch(
        installed=True,
        version=version,
        local=local_tag(version),
        cuda=version_py.get("cuda"),
        hip=version_py.get("hip"),
        location=location if os.path.isdir(location) else None,
        nvidia_wheels=tuple(dict.fromkeys(wheels)),
        source=SOURCE,
        error=error,
        torchvision=vision.version if vision is not None else None,
    )
