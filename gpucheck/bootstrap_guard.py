"""Bootstrap installs exactly the torch build it announced, and checks that it did.

- exact pins, local tag included (`torch==2.14.1+cpu`, `torchvision==0.29.1+cpu`);
- the torch step runs with the installer's configuration switched off (see CONFIG_OFF);
- afterwards the versions in the environment are read from its metadata and compared.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from gpucheck import proc

SMALL_TIMEOUT_S = 300.0


# The torch step runs with pip's (and uv's) configuration switched off: a mirror, an extra
# index, a --find-links folder or a constraints file there could otherwise hand over another
# build than the one announced (issue seen: a CUDA build from PyPI instead of +cpu). The pins
# below are exact, local tag included, so they alone reject another build; the isolation also
# keeps a configured constraint from failing the pinned one. Network settings (certificate,
# proxy, trusted hosts) are carried over, as they do not choose packages.
CONFIG_OFF = ("PIP_CONFIG_FILE", os.devnull)
SOURCE_VARS = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_CONSTRAINT",
    "PIP_REQUIREMENT",
    "PIP_PRE",
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_CONSTRAINT",
)
NETWORK_KEYS = ("cert", "client-cert", "proxy", "trusted-host")
# Short network limits for the torch step: an unreachable index fails in seconds, not minutes
# of retries (the default is 5 retries of 15 s).
PIP_NET_FLAGS = ("--timeout", "30", "--retries", "1")
NETWORK_ERRORS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
    "SSLError",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "Could not fetch URL",
    "Failed to fetch",  # uv
)


def planned_versions(rec: Any) -> dict[str, str]:
    """The exact versions to install, local tag included where the wheels carry one.

    Wheels on a PyTorch index are tagged (torch 2.14.1+cpu, torchvision 0.29.1+cpu); PyPI's
    are not. Pinning the tag is what keeps pip from taking an untagged (other) build.
    """
    local = None
    if rec.index_url and rec.build and "+" in rec.build:
        local = rec.build.split("+", 1)[1]
    tag = f"+{local}" if local else ""
    out = {"torch": f"{rec.torch}{tag}"}
    if rec.torchvision:
        out["torchvision"] = f"{rec.torchvision}{tag}"
    return out


def torch_packages(rec: Any) -> list[str]:
    return [f"{name}=={version}" for name, version in planned_versions(rec).items()]


def isolated_env(env: dict[str, str], network: dict[str, str]) -> dict[str, str]:
    """`env` for the torch step: no configured package source, the network settings kept.

    `network` is what pip_network_config read from pip's configuration files.
    """
    out = {k: v for k, v in env.items() if k not in SOURCE_VARS}
    for key, value in network.items():
        out.setdefault("PIP_" + key.upper().replace("-", "_"), value)
    out[CONFIG_OFF[0]] = CONFIG_OFF[1]
    out["UV_NO_CONFIG"] = "1"
    out.setdefault("UV_HTTP_TIMEOUT", "30")
    return out


def pip_network_config(python: Path, env: dict[str, str]) -> dict[str, str]:
    """The network settings (cert, proxy, ...) in pip's configuration files, by key."""
    done = proc.run([str(python), "-m", "pip", "config", "list"], timeout=SMALL_TIMEOUT_S, env=env)
    out: dict[str, str] = {}
    for line in done.stdout.splitlines() if done.ok else ():
        key, _, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if name in NETWORK_KEYS and section in ("global", "install"):
            out[name] = value.strip().strip("'\"")
    return out


def installed_versions(python: Path, env: dict[str, str], names: list[str]) -> dict[str, str]:
    """name -> version installed in the environment, read from metadata (nothing imported)."""
    code = (
        "import importlib.metadata as m, sys\n"
        "for n in sys.argv[1:]:\n"
        "    try: print(n, m.version(n))\n"
        "    except m.PackageNotFoundError: print(n, '-')\n"
    )
    done = proc.run(
        [str(python), "-I", "-c", code, *names],
        timeout=SMALL_TIMEOUT_S,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    out = {}
    for line in done.stdout.splitlines():
        name, _, version = line.partition(" ")
        if version and version != "-":
            out[name] = version
    return out


def check_installed(planned: dict[str, str], installed: dict[str, str]) -> str | None:
    """Why the environment does not hold the planned build, or None when it does."""
    from packaging.version import InvalidVersion, Version

    for name, want in planned.items():
        got = installed.get(name)
        try:
            same = got is not None and Version(got) == Version(want)
        except InvalidVersion:
            same = False
        if not same:
            return f"{name} {got or 'is missing'} is installed, not the planned {want}"
    return None
