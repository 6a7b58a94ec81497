"""Rules GC201-GC210: torch, the CUDA it was built for, cuDNN, library paths.

The torch child's own outcome (GC211-GC215) is judged in rules_child.py.

Sources: NVIDIA's CUDA Toolkit release notes, Tables 2 and 3 (driver minimums, minor version
compatibility), kept in gpucheck/compat; the CUDA compatibility guide (cubin runs on the same
major with an equal or higher minor, PTX JIT on any newer GPU); torch.cuda.get_arch_list() of
the PyTorch wheels; the cuDNN support matrix; PyTorch's "CUDA semantics" notes (TF32 and
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE); the CUDA Runtime API error list (cudaErrorDevicesUnavailable,
"busy or unavailable").
"""

from __future__ import annotations

from collections.abc import Iterator

from gpucheck.diagnose import facts, rule
from gpucheck.findings import Finding, Severity
from gpucheck.snapshot import LibDir, Snapshot

ERROR, WARN, INFO = Severity.ERROR, Severity.WARN, Severity.INFO

RECOMMEND = "`gpucheck recommend` prints the install command that fits this machine"
# Libraries that pip CUDA wheels of torch ship themselves (libcuda/libnvidia-ml are the driver's).
_SHIPPED = (
    "cudart", "cublas", "cudnn", "nvjitlink", "cusparse", "cufft", "curand", "cusolver",
    "nccl", "nvrtc", "cupti", "nvtx", "cufile", "cusparselt",
)  # fmt: skip


def _torch_ev(s: Snapshot) -> str:
    cuda = facts.torch_cuda(s)
    build = (
        f"built for CUDA {cuda}"
        if cuda
        else "CPU build"
        if facts.is_cpu_torch(s)
        else "CUDA unknown"
    )
    return f"torch {facts.torch_version(s) or '?'} ({build})"


def _driver_ev(s: Snapshot) -> str:
    d = s.driver
    return f"driver {d.version or d.kernel_module_version or '?'} (supports CUDA {d.cuda_version or '?'})"


def _gpus_ev(s: Snapshot) -> str:
    gpus = facts.healthy_gpus(s)
    names = sorted({g.name or "?" for g in gpus})
    return f"NVML sees {len(gpus)} GPU(s): {', '.join(names)}"


def _is_shipped(lib: str) -> bool:
    low = lib.lower()
    return any(f"lib{name}" in low or low.startswith(name) for name in _SHIPPED)


def _shadowing_dirs(s: Snapshot) -> list[LibDir]:
    return [
        d
        for d in s.system.ld_library_path
        if not facts.is_wheel_lib_path(d.path + "/")
        and any(_is_shipped(lib) for lib in d.libraries)
    ]


def _trimmed_ld_path(s: Snapshot, drop: list[str]) -> str | None:
    raw = s.system.env.get("LD_LIBRARY_PATH")
    if raw is None:
        return None
    keep = [p for p in raw.split(":") if p and p.rstrip("/") not in {d.rstrip("/") for d in drop}]
    return f"export LD_LIBRARY_PATH={':'.join(keep)}" if keep else "unset LD_LIBRARY_PATH"


def _ld_fix(s: Snapshot, dirs: list[str]) -> str:
    cmd = _trimmed_ld_path(s, dirs)
    what = (
        f"`{cmd}`"
        if cmd
        else f"remove {', '.join(dirs)} from LD_LIBRARY_PATH (or `unset LD_LIBRARY_PATH`)"
    )
    return (
        f"{what}, and drop it from ~/.bashrc, the venv's activate script or the module file that "
        "sets it: pip torch finds its own CUDA libraries through its RPATH."
    )


def _ok_rt(s: Snapshot):
    rt = s.torch_runtime
    return rt if rt is not None and rt.status == "ok" else None


# --- torch presence and build ---------------------------------------------------------------


@rule("GC201")
def torch_missing(s: Snapshot) -> Iterator[Finding]:
    """GC201: torch is not installed in this Python."""
    if facts.torch_installed(s):
        return
    gpus = facts.healthy_gpus(s)
    py = s.system.python
    ev = [f"torch not found in {py.executable if py else 'this Python'}"]
    if gpus:
        ev.append(_gpus_ev(s))
    yield Finding(
        "GC201",
        WARN if gpus else INFO,
        "torch is not installed",
        tuple(ev),
        fix=f"{RECOMMEND}; or `gpucheck bootstrap` creates an environment with it.",
    )


@rule("GC202")
def cpu_torch_on_gpu(s: Snapshot) -> Iterator[Finding]:
    """GC202: a CPU-only (or ROCm) torch on a machine with an NVIDIA GPU."""
    if not facts.healthy_gpus(s) or not (facts.is_cpu_torch(s) or facts.is_rocm_torch(s)):
        return
    kind = "ROCm (AMD)" if facts.is_rocm_torch(s) else "CPU-only"
    yield Finding(
        "GC202",
        ERROR,
        f"torch is a {kind} build but this machine has an NVIDIA GPU",
        (
            f"torch {facts.torch_version(s) or '?'}: torch.version.cuda is None",
            _gpus_ev(s),
            _driver_ev(s),
        ),
        fix=f"`pip uninstall -y torch`, then install a CUDA build: {RECOMMEND}.",
    )


@rule("GC203", "GC204")
def driver_vs_torch_cuda(s: Snapshot) -> Iterator[Finding]:
    """GC203 (driver too old for torch's CUDA) and GC204 (runs on minor version compatibility)."""
    if facts.is_rocm_torch(s):
        return
    fit = facts.driver_fit(s)
    if fit is None or fit.verdict in ("full", "unknown"):
        return
    if not s.gpus and not facts.host_driver_hint(s):
        return
    tc = f"{fit.torch_cuda[0]}.{fit.torch_cuda[1]}"
    dc = f"{fit.driver_cuda[0]}.{fit.driver_cuda[1]}" if fit.driver_cuda else "?"
    ev = [_torch_ev(s), f"driver {fit.driver or '?'} supports CUDA {dc}"]
    if fit.verdict == "too-old":
        if fit.floor:
            ev.append(
                f"CUDA {fit.torch_cuda[0]}.x needs driver >= {fit.floor} (minor version compatibility)"
            )
        need = fit.floor or fit.full_min
        yield Finding(
            "GC203",
            ERROR,
            f"The NVIDIA driver is too old for this torch (built for CUDA {tc})",
            tuple(ev),
            fix=f"Upgrade the NVIDIA driver to >= {fit.full_min or need} (>= {need} is the "
            f"minimum), or install a torch built for CUDA <= {dc}: {RECOMMEND}.",
        )
        return
    ev.append(
        f"CUDA {fit.torch_cuda[0]}.x minor version compatibility floor: driver >= {fit.floor}"
    )
    if fit.full_min:
        ev.append(f"full feature set for CUDA {tc}: driver >= {fit.full_min}")
    ptx = _ptx_only_gpus(s)
    if ptx:
        ev.append(f"GPU(s) {', '.join(map(str, ptx))} run torch's kernels only through PTX JIT")
    yield Finding(
        "GC204",
        WARN if ptx else INFO,
        f"torch (CUDA {tc}) runs on this driver (CUDA {dc}) through minor version compatibility",
        tuple(ev),
        fix="Works as is for the compiled kernels. PTX JIT (new GPU archs, some NVRTC kernels) and "
        f"APIs newer than CUDA {dc} need the full-feature driver >= {fit.full_min or '?'}: upgrade "
        "the driver when convenient.",
    )


def _ptx_only_gpus(s: Snapshot) -> list[int]:
    al = facts.arch_list(s)
    if al is None:
        return []
    out = []
    for g in facts.healthy_gpus(s):
        cc = facts.capability(g.compute_capability)
        if cc is not None and facts.arch_runs(cc, al.archs) == "ptx":
            out.append(g.index)
    return out


def _missing_arch_gpus(s: Snapshot) -> dict[tuple[int, int], list[int]]:
    """capability -> NVML GPU indices whose arch this torch build cannot run."""
    al = facts.arch_list(s)
    out: dict[tuple[int, int], list[int]] = {}
    if al is None:
        return out
    for g in facts.healthy_gpus(s):
        cc = facts.capability(g.compute_capability)
        if cc is not None and facts.arch_runs(cc, al.archs) is None:
            out.setdefault(cc, []).append(g.index)
    return out


def _arch_hint(cc: tuple[int, int]) -> str:
    if cc < (5, 0):
        return (
            "No current torch wheel supports this GPU; the last ones with sm_37 were cu118 builds."
        )
    if cc < (7, 5):
        return (
            "For Maxwell/Pascal/Volta use a cu126 wheel (torch <= 2.14): `pip install torch "
            "--index-url https://download.pytorch.org/whl/cu126`."
        )
    if cc >= (10, 0):
        return "Blackwell needs a cu128 (torch >= 2.7) or cu130/cu132 wheel."
    return f"Or build from source with TORCH_CUDA_ARCH_LIST={cc[0]}.{cc[1]}."


@rule("GC205")
def arch_missing(s: Snapshot) -> Iterator[Finding]:
    """GC205: the GPU's compute capability has no cubin and no usable PTX in torch."""
    al = facts.arch_list(s)
    missing = _missing_arch_gpus(s)
    if al is None or not missing:
        return
    lowest = facts.min_arch(al.archs)
    rt = _ok_rt(s)
    for cc, indices in sorted(missing.items()):
        gpus = [g for g in s.gpus if g.index in indices]
        name = gpus[0].name or "GPU"
        sm = f"sm_{cc[0]}{cc[1]}"
        too_old = lowest is not None and cc < lowest
        ev = [
            f"GPU {', '.join(map(str, indices))}: {name}, compute capability {cc[0]}.{cc[1]}",
            f"{_torch_ev(s)} arch list ({al.source}): {' '.join(al.archs)}",
        ]
        if rt is not None:
            errs = [d.error for d in rt.devices if d.error]
            if errs:
                ev.append(f"torch child: {errs[0][:160]}")
        title = (
            f"{name} ({sm}) is too old for this torch build: its oldest arch is sm_{lowest[0]}{lowest[1]}"
            if too_old and lowest
            else f"This torch build has no kernels for {name} ({sm}): 'no kernel image is available'"
        )
        yield Finding(
            "GC205",
            ERROR if al.measured else WARN,
            title,
            tuple(ev),
            fix=f"Install a torch build that includes {sm}: {RECOMMEND}. {_arch_hint(cc)}",
            gpu=indices[0] if len(indices) == 1 else None,
        )


# --- cuDNN and library paths ----------------------------------------------------------------


@rule("GC206")
def cudnn_missing(s: Snapshot) -> Iterator[Finding]:
    """GC206: a CUDA torch without a loadable cuDNN."""
    rt = _ok_rt(s)
    if rt is not None:
        if rt.cuda_available and not rt.cudnn_version:
            yield Finding(
                "GC206",
                ERROR,
                "torch's cuDNN did not load (torch.backends.cudnn.version() is None)",
                (_torch_ev(s), "torch child: cuda.is_available() True, cudnn version None"),
                fix=_cudnn_fix(s),
            )
        return
    if not facts.is_pip_cuda_torch(s) or not s.torch.nvidia_wheels:
        return
    if facts.has_cudnn_wheel(s) or s.cuda.libs("cudnn"):
        return
    yield Finding(
        "GC206",
        WARN,
        "No cuDNN found for this CUDA torch (no nvidia-cudnn wheel, no libcudnn on the system)",
        (_torch_ev(s), f"nvidia wheels: {', '.join(p.name for p in s.torch.nvidia_wheels)}"),
        fix=_cudnn_fix(s),
    )


def _cudnn_fix(s: Snapshot) -> str:
    v = facts.torch_version(s)
    local = s.torch.local
    pin = f"torch=={v}" if v else "torch"
    index = (
        f" --index-url https://download.pytorch.org/whl/{local}"
        if local and local.startswith("cu")
        else ""
    )
    return (
        f"Reinstall torch so that pip pulls its nvidia-cudnn wheel: `pip install --force-reinstall "
        f"--no-cache-dir {pin}{index}`."
    )


def _cudnn_copies(s: Snapshot) -> dict[tuple[int, ...], list[str]]:
    """cuDNN version (major, minor, patch) -> where it was found."""
    out: dict[tuple[int, ...], list[str]] = {}
    for lib in s.cuda.libs("cudnn"):
        v = facts.vtuple(lib.version)
        if v is not None:
            out.setdefault(v[:3], []).append(f"{lib.path} ({lib.source})")
    rt = _ok_rt(s)
    if rt is not None and rt.cudnn_path and rt.cudnn_version:
        v = facts.vtuple(rt.cudnn_version)
        if v is not None and not any(rt.cudnn_path in w for w in out.get(v[:3], [])):
            out.setdefault(v[:3], []).append(f"{rt.cudnn_path} (mapped by torch)")
    return out


def _mapped_not_wheel(s: Snapshot) -> bool:
    rt = _ok_rt(s)
    return bool(
        rt is not None
        and rt.cudnn_path
        and facts.is_pip_cuda_torch(s)
        and facts.has_cudnn_wheel(s)
        and not facts.is_wheel_lib_path(rt.cudnn_path)
    )


@rule("GC207")
def several_cudnn(s: Snapshot) -> Iterator[Finding]:
    """GC207: more than one cuDNN version on this machine."""
    copies = _cudnn_copies(s)
    if len(copies) < 2:
        return
    on_path = [
        d.path for d in s.system.ld_library_path if any("cudnn" in lib for lib in d.libraries)
    ]
    risky = bool(on_path) or _mapped_not_wheel(s)
    ev = [f"cuDNN {facts.fmt(v)}: {'; '.join(w)}" for v, w in sorted(copies.items(), reverse=True)]
    if on_path:
        ev.append(f"on LD_LIBRARY_PATH: {', '.join(on_path)}")
    rt = _ok_rt(s)
    if rt is not None and rt.cudnn_path:
        ev.append(f"torch loaded {rt.cudnn_path}")
    fix = (
        "torch should load the cuDNN of its own nvidia-cudnn wheel; keep other cuDNN folders off "
        "LD_LIBRARY_PATH. " + (_ld_fix(s, on_path) if on_path else "")
    ).strip()
    if not risky:
        fix = (
            "Nothing to do for torch, which loads its wheel's copy. Other programs (onnxruntime, "
            "ctranslate2) use the system loader and may pick another version."
        )
    yield Finding(
        "GC207",
        WARN if risky else INFO,
        f"{len(copies)} cuDNN versions found: torch may load the wrong one"
        if risky
        else f"{len(copies)} cuDNN versions found",
        tuple(ev),
        fix=fix,
    )


@rule("GC208")
def cudnn_not_from_wheel(s: Snapshot) -> Iterator[Finding]:
    """GC208: the torch child mapped a libcudnn that is not its pip wheel's copy."""
    if not _mapped_not_wheel(s):
        return
    rt = s.torch_runtime
    assert rt is not None and rt.cudnn_path
    folder = rt.cudnn_path.rsplit("/", 1)[0]
    yield Finding(
        "GC208",
        WARN,
        "torch loaded a cuDNN from outside its nvidia-cudnn wheel",
        (
            f"mapped: {rt.cudnn_path} (cuDNN {rt.cudnn_version or '?'})",
            f"wheel: nvidia-cudnn {facts.cudnn_wheel_version(s)}",
        ),
        fix=_ld_fix(s, [folder]),
    )


@rule("GC209")
def ld_library_path_shadow(s: Snapshot) -> Iterator[Finding]:
    """GC209: LD_LIBRARY_PATH holds CUDA/cuDNN libraries that a pip CUDA torch ships itself."""
    if not facts.is_pip_cuda_torch(s):
        return
    dirs = _shadowing_dirs(s)
    if not dirs:
        return
    ev = [f"LD_LIBRARY_PATH entry {d.path}: {', '.join(d.libraries[:6])}" for d in dirs]
    rt = s.torch_runtime
    if rt is not None:
        loaded = [
            p
            for p in rt.loaded_libraries
            if any(p.startswith(d.path.rstrip("/") + "/") for d in dirs)
        ]
        if loaded:
            ev.append(f"torch loaded from there: {', '.join(loaded[:4])}")
    ev.append(_torch_ev(s))
    yield Finding(
        "GC209",
        WARN,
        "LD_LIBRARY_PATH holds CUDA libraries that shadow the ones torch ships with",
        tuple(ev),
        fix=_ld_fix(s, [d.path for d in dirs]),
    )


@rule("GC210")
def toolkit_not_needed(s: Snapshot) -> Iterator[Finding]:
    """GC210: a CUDA toolkit on disk that pip torch does not use."""
    if not s.cuda.toolkits:
        return
    if facts.torch_installed(s) and not (facts.is_pip_cuda_torch(s) or facts.is_cpu_torch(s)):
        return  # conda or source builds may use it
    shadow = (
        {d.path.rstrip("/") for d in _shadowing_dirs(s)} if facts.is_pip_cuda_torch(s) else set()
    )
    for tk in s.cuda.toolkits:
        if any(p.startswith(tk.path.rstrip("/") + "/") for p in shadow):
            continue  # GC209 covers a toolkit that is already on LD_LIBRARY_PATH
        ev = [f"CUDA toolkit {tk.version or '?'} at {tk.path} (found via {tk.source})"]
        if facts.torch_installed(s):
            ev.append(_torch_ev(s))
        tc, kv = facts.major_minor(facts.torch_cuda(s)), facts.major_minor(tk.version)
        if tc and kv and tc[0] != kv[0]:
            ev.append(
                f"its CUDA {kv[0]}.x differs from torch's {tc[0]}.x: building CUDA extensions against it will fail"
            )
        yield Finding(
            "GC210",
            INFO,
            f"CUDA toolkit {tk.version or ''} found; pip torch does not need it".replace("  ", " "),
            tuple(ev),
            fix="Nothing to do: pip torch wheels bundle the CUDA runtime, cuBLAS and cuDNN. Do NOT "
            f"add {tk.path}/lib64 to LD_LIBRARY_PATH (it would shadow torch's libraries). Use the "
            f"toolkit only to compile CUDA code, with `export CUDA_HOME={tk.path}`.",
        )
