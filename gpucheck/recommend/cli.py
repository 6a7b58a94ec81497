"""`gpucheck recommend`: the torch build for this machine, or for one described by flags."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from gpucheck.compat import CompatTable, load_table, parse_cc
from gpucheck.errors import UsageError
from gpucheck.recommend.engine import parse_torch_spec, recommend
from gpucheck.recommend.machine import Machine, MachineGpu, describe_gpu, short_python
from gpucheck.recommend.model import NOTHING_FITS, Recommendation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group(
        "describe another machine (each flag overrides what was probed here)"
    )
    what.add_argument("--os", choices=("linux", "windows", "macos"), help="operating system")
    what.add_argument("--arch", choices=("x86_64", "aarch64", "arm64"), help="CPU architecture")
    what.add_argument(
        "--python", metavar="X.Y", help="Python version, e.g. 3.12 (free-threaded: 3.13t, 3.14t)"
    )
    what.add_argument("--driver", metavar="VERSION", help="NVIDIA driver version, e.g. 550.54.14")
    what.add_argument(
        "--gpu",
        action="append",
        metavar="NAME",
        default=None,
        help="GPU name (repeatable), e.g. 'RTX 4090', 'H100', 'MI300X', 'Arc A770'",
    )
    what.add_argument(
        "--compute-capability",
        action="append",
        metavar="X.Y",
        default=None,
        help="compute capability (repeatable; pairs with --gpu by order)",
    )
    what.add_argument(
        "--rocm-arch",
        action="append",
        metavar="gfxNNNN",
        default=None,
        help="AMD GPU architecture, e.g. gfx942 (repeatable)",
    )
    what.add_argument("--wsl", action="store_true", default=None, help="the machine is WSL2")
    what.add_argument(
        "--glibc", metavar="X.Y", help="the C library version on Linux (ldd --version), e.g. 2.28"
    )
    what.add_argument("--torch", metavar="SPEC", help="a torch constraint, e.g. '2.5.*' or '<2.10'")
    out = parser.add_argument_group("input and output")
    out.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    out.add_argument(
        "--format",
        choices=("pip", "uv-project", "pixi", "requirements", "conda-env"),
        default="pip",
        help="pip: the commands (default); or a project file: uv-project (pyproject.toml), "
        "pixi (pixi.toml), requirements (requirements.txt), conda-env (environment.yml)",
    )
    out.add_argument(
        "--compat", metavar="FILE", help="a compatibility table to use instead of the built-in one"
    )
    out.add_argument(
        "--from-snapshot", metavar="FILE", help="start from a recorded snapshot instead of probing"
    )


def _usage(message: str) -> UsageError:
    return UsageError(message)


def load_compat_arg(path: str | None) -> CompatTable:
    """`--compat FILE` through the one loader (size cap, UTF-8, one line on error), or built-in."""
    from gpucheck.io import load_compat

    return load_compat(path) or load_table()


def probe_machine(args: argparse.Namespace, table: CompatTable) -> Machine:
    """The machine from --from-snapshot or a static probe of this one (lazy import)."""
    if getattr(args, "from_snapshot", None):
        from gpucheck.io import load_snapshot

        return Machine.from_snapshot(load_snapshot(args.from_snapshot), table)
    from gpucheck.probe import collect

    return Machine.from_snapshot(collect(torch_child=False), table)


CUDA_GPUS_URL = "https://developer.nvidia.com/cuda-gpus"


def _known_enough(gpu: MachineGpu, rocm_given: bool) -> None:
    """A GPU named by --gpu must have a capability (NVIDIA) or gfx target (AMD) to judge builds."""
    if gpu.vendor == "nvidia" and gpu.compute_capability is None:
        raise _usage(
            f"--gpu {gpu.name!r}: not a GPU name gpucheck knows, so its compute capability is "
            "unknown; pass it with --compute-capability X.Y (on that machine: nvidia-smi "
            f"--query-gpu=name,compute_cap --format=csv; or NVIDIA's list, {CUDA_GPUS_URL})"
        )
    if gpu.vendor == "amd" and gpu.gfx is None and not rocm_given:
        raise _usage(
            f"--gpu {gpu.name!r}: its gfx target is unknown; pass it with --rocm-arch gfxNNNN "
            "(on that machine: rocminfo | grep gfx)"
        )


def machine_from_args(
    args: argparse.Namespace, table: CompatTable, base: Machine | None
) -> Machine:
    """Apply the flags to `base` (the probed machine); raise UsageError on a bad value."""
    changes: dict[str, Any] = {}
    if args.os:
        changes["os"] = args.os
    if args.arch:
        changes["arch"] = args.arch
    if args.python:
        if not re.fullmatch(r"3\.\d{1,2}(\.\d+)?t?", args.python.strip()):
            raise _usage(f"--python: expected X.Y such as 3.12 or 3.13t, got {args.python!r}")
        changes["python"] = short_python(args.python)
    if args.driver:
        if not re.fullmatch(r"\d{2,4}(\.\d{1,3}){0,2}", args.driver.strip()):
            raise _usage(
                f"--driver: expected a driver version such as 550.54.14, got {args.driver!r}"
            )
        changes["driver"] = args.driver.strip()
        changes["driver_cuda"] = None
    if getattr(args, "glibc", None):
        if not re.fullmatch(r"2\.\d{1,2}", args.glibc.strip()):
            raise _usage(f"--glibc: expected a glibc version such as 2.28, got {args.glibc!r}")
        changes["glibc"] = args.glibc.strip()
    highest = table.max_cc
    for cc in args.compute_capability or ():
        try:
            value = parse_cc(cc)
        except ValueError:
            raise _usage(f"--compute-capability: expected X.Y such as 8.6, got {cc!r}") from None
        if value[0] > highest[0] or value < (1, 0):
            raise _usage(
                f"--compute-capability: {cc.strip()} is not a compute capability NVIDIA lists "
                f"(highest known: {highest[0]}.{highest[1]}; see {CUDA_GPUS_URL})"
            )
    for gfx in args.rocm_arch or ():
        if not re.fullmatch(r"gfx[0-9a-f]{3,4}", gfx.strip().lower()):
            raise _usage(f"--rocm-arch: expected a gfx target such as gfx942, got {gfx!r}")
    if args.gpu or args.compute_capability or args.rocm_arch:
        names = list(args.gpu or [])
        caps = list(args.compute_capability or [])
        gpus: list[MachineGpu] = []
        for i in range(max(len(names), len(caps))):
            name = names[i].strip() if i < len(names) else None
            cc = caps[i].strip() if i < len(caps) else None
            if name is not None and not name:
                raise _usage("--gpu: empty GPU name")
            gpu = describe_gpu(i, name, cc, table, vendor="nvidia" if cc else None)
            _known_enough(gpu, bool(args.rocm_arch))
            gpus.append(gpu)
        changes["gpus"] = tuple(gpus)
        changes["rocm_archs"] = tuple(g.strip().lower() for g in args.rocm_arch or ())
    if args.wsl:
        changes["wsl"] = True
    os_name = changes.get("os", base.os if base else None)
    if os_name is None:
        raise _usage("--os is needed when no machine was probed")
    if changes.get("wsl") and os_name != "linux":
        raise _usage("--wsl describes Linux under Windows: it needs --os linux")
    if base is None:
        base = Machine(os=os_name, arch=changes.get("arch", "x86_64"))
    # a different OS, CPU or Python is another environment: its installed torch is not ours
    if any(k in changes and changes[k] != getattr(base, k) for k in ("os", "arch", "python")):
        changes["torch"] = None
    if changes.get("os") == "macos" and "arch" not in changes:
        changes["arch"] = "arm64"
    if changes.get("os") in ("windows",) and "arch" not in changes:
        changes["arch"] = "x86_64"
    return base.replace(**changes)


def run(args: argparse.Namespace) -> int:
    if args.json and getattr(args, "format", "pip") != "pip":
        raise _usage(f"--json and --format {args.format} cannot be combined")
    table = load_compat_arg(getattr(args, "compat", None))
    try:
        parse_torch_spec(args.torch)
    except ValueError as exc:
        raise _usage(f"--torch: {exc}") from None
    base = probe_machine(args, table)
    machine = machine_from_args(args, table, base)
    rec = recommend(machine, table=table, torch_spec=args.torch)
    if getattr(args, "format", "pip") != "pip":
        from gpucheck.recommend.formats import write_format

        return write_format(rec, args.format, table)
    if args.json:
        sys.stdout.write(json.dumps(rec.to_dict(), indent=2) + "\n")
    else:
        print_human(rec)
    return 1 if rec.action in NOTHING_FITS else 0


def print_human(rec: Recommendation, file: Any = None) -> None:
    """Short: the command(s) first, then the reasons, then the warnings (never wrapped)."""
    from rich.console import Console

    from gpucheck.render.recommendation import print_recommendation

    console = Console(file=file or sys.stdout, highlight=False, soft_wrap=False)
    print_recommendation(rec, console)
