"""A fake machine for end-to-end fault tests: a /proc,/sys,/dev tree, fake binaries, fake torch."""

from __future__ import annotations

import os
import pathlib
import stat
import textwrap

TEXT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "text"


def write(root: pathlib.Path, path: str, text: str = "") -> pathlib.Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def gpu_host(root: pathlib.Path, *, driver_loaded: bool = True) -> pathlib.Path:
    """A Debian host with one NVIDIA GPU on the PCI bus, its modules and device nodes."""
    write(root, "/etc/os-release", (TEXT / "os_release_debian12.txt").read_text())
    write(root, "/proc/version", "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)\n")
    write(root, "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n")
    write(root, "/proc/meminfo", (TEXT / "proc_meminfo.txt").read_text())
    write(root, "/proc/1/cgroup", "0::/init.scope\n")
    write(root, "/sys/bus/pci/devices/0000:18:00.0/vendor", "0x10de\n")
    write(root, "/sys/bus/pci/devices/0000:18:00.0/class", "0x030200\n")
    (root / "dev/shm").mkdir(parents=True, exist_ok=True)
    if driver_loaded:
        write(root, "/proc/modules", (TEXT / "proc_modules.txt").read_text())
        write(
            root,
            "/proc/driver/nvidia/version",
            (TEXT / "proc_driver_version_proprietary.txt").read_text(),
        )
        for node in ("nvidia0", "nvidiactl", "nvidia-uvm"):
            write(root, f"/dev/{node}")
    else:
        write(root, "/proc/modules", "")
    return root


def fake_binary(folder: pathlib.Path, name: str, script: str) -> pathlib.Path:
    """An executable shell script on a PATH folder of its own (e.g. a hanging nvidia-smi)."""
    path = write(folder, name, "#!/bin/sh\n" + textwrap.dedent(script))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_torch(folder: pathlib.Path, body: str) -> str:
    """A `torch` package whose import runs `body`; returns the folder to put on PYTHONPATH."""
    write(folder, "torch/__init__.py", textwrap.dedent(body))
    return str(folder)


def env_with(path_dirs: list[str] | None = None, pythonpath: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "NVIDIA_"))}
    env["PATH"] = os.pathsep.join([*(path_dirs or []), "/usr/bin", "/bin"])
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env
