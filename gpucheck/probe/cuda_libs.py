"""CUDA toolkits and CUDA-family shared libraries on disk (loader cache, pip wheels, conda).

A hand search: NVIDIA's cuda-pathfinder finds one library per name for loading, whereas we want
every copy (several cuDNNs is itself a finding) and no dlopen in the main process.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import re
from collections.abc import Mapping

from gpucheck.probe._util import read_text, rooted, run_command, which
from gpucheck.probe.parsers import (
    parse_cuda_version_json,
    parse_cudart_header,
    parse_cudnn_header,
    parse_ldconfig,
    parse_nvcc_version,
    version_from_filename,
)
from gpucheck.probe.pyenv import PyEnv
from gpucheck.snapshot import Cuda, Library, Toolkit

# File name -> library name in the snapshot (Library.name).
_LIB_RE = re.compile(
    r"^lib(cuda|cudart|cudnn|nvidia-ml|cublas|cublasLt|nccl|nvJitLink|nvrtc)\.so(?:\.\d+)*$"
)
_LIB_NAMES = {"nvidia-ml": "nvml", "nvJitLink": "nvjitlink"}
# Library name -> the pip distribution stem that ships it (nvidia-<stem>[-cuXX]).
_PIP_STEMS = {
    "cudart": "cuda_runtime",
    "nvrtc": "cuda_nvrtc",
    "nvjitlink": "nvjitlink",
    "cublas": "cublas",
    "cublasLt": "cublas",
    "cudnn": "cudnn",
    "nccl": "nccl",
}
_TIMEOUT = 5.0
# platform.machine() -> the tag `ldconfig -p` prints for that ABI.
_LDCONFIG_ARCH = {"x86_64": "x86-64", "aarch64": "AArch64", "ppc64le": "64bit"}


def library_name(filename: str) -> str | None:
    """ "libcudnn.so.9.1.0" -> "cudnn", "libnvidia-ml.so.1" -> "nvml", others -> None."""
    m = _LIB_RE.match(filename)
    if not m:
        return None
    return _LIB_NAMES.get(m.group(1), m.group(1))


def _unroot(root: str, path: str) -> str:
    if root in ("", "/"):
        return path
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else "/" + rel


# --- toolkits ------------------------------------------------------------------------------


def _runtime_header(folder: str) -> str | None:
    for pattern in ("include/cuda_runtime_api.h", "targets/*/include/cuda_runtime_api.h"):
        hits = sorted(glob.glob(os.path.join(folder, pattern)))
        if hits:
            return hits[0]
    return None


def _is_toolkit(folder: str) -> bool:
    return (
        os.path.isfile(os.path.join(folder, "version.json")) or _runtime_header(folder) is not None
    )


def _nvcc_version(nvcc: str, env: Mapping[str, str]) -> str | None:
    result = run_command([nvcc, "--version"], timeout=_TIMEOUT, env=env)
    return parse_nvcc_version(result.stdout) if result.returncode == 0 else None


def toolkit_version(folder: str, env: Mapping[str, str]) -> str | None:
    """version.json, else CUDART_VERSION in the runtime header, else nvcc, else the folder name."""
    text = read_text(os.path.join(folder, "version.json"))
    if text is not None:
        try:
            version = parse_cuda_version_json(json.loads(text))
        except ValueError:
            version = None
        if version:
            return version
    header = _runtime_header(folder)
    if header:
        version = parse_cudart_header(read_text(header) or "")
        if version:
            return version
    nvcc = os.path.join(folder, "bin", "nvcc")
    if os.access(nvcc, os.X_OK):
        version = _nvcc_version(nvcc, env)
        if version:
            return version
    m = re.search(r"cuda-(\d+\.\d+)$", os.path.basename(folder.rstrip("/")))
    return m.group(1) if m else None


def _toolkit_of_nvcc(nvcc: str) -> str | None:
    """The toolkit folder an nvcc on PATH belongs to, following symlinks and sh wrappers."""
    real = os.path.realpath(nvcc)
    folder = os.path.dirname(os.path.dirname(real))
    if _is_toolkit(folder):
        return folder
    # A small shell wrapper such as `exec /usr/local/cuda-13.0/bin/nvcc "$@"`.
    try:
        if os.path.getsize(real) < 64 * 1024:
            text = read_text(real) or ""
            if text.startswith("#!"):
                for m in re.finditer(r"(/[^\s\"']+)/bin/nvcc\b", text):
                    if _is_toolkit(m.group(1)):
                        return os.path.realpath(m.group(1))
    except OSError:
        pass
    return None


def find_toolkits(root: str, env: Mapping[str, str]) -> tuple[Toolkit, ...]:
    """Every CUDA toolkit we can see, deduplicated by real path; the nvcc on PATH first."""
    found: dict[str, Toolkit] = {}

    nvcc = which("nvcc", env)
    if nvcc:
        folder = _toolkit_of_nvcc(nvcc)
        version = _nvcc_version(nvcc, env)
        if folder is None:
            # An nvcc outside any recognisable toolkit: still report it and its version.
            folder = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        inner = os.path.join(folder, "bin", "nvcc")
        found[os.path.realpath(folder)] = Toolkit(
            version=version or toolkit_version(folder, env),
            path=_unroot(root, os.path.realpath(folder)),
            source="nvcc",
            nvcc=_unroot(root, inner if os.path.isfile(inner) else nvcc),
        )

    candidates: list[tuple[str, str]] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            candidates.append((rooted(root, env[var]), var))
    for pattern in ("/usr/local/cuda", "/usr/local/cuda-*", "/opt/cuda", "/opt/cuda-*"):
        candidates += [(p, "folder") for p in sorted(glob.glob(rooted(root, pattern)))]
    if env.get("CONDA_PREFIX"):
        candidates.append((rooted(root, env["CONDA_PREFIX"]), "conda"))

    for folder, source in candidates:
        real = os.path.realpath(folder)
        if real in found or not os.path.isdir(real) or not _is_toolkit(real):
            continue
        nvcc_path = os.path.join(real, "bin", "nvcc")
        found[real] = Toolkit(
            version=toolkit_version(real, env),
            path=_unroot(root, real),
            source=source,
            nvcc=_unroot(root, nvcc_path) if os.path.isfile(nvcc_path) else None,
        )
    return tuple(found.values())


# --- libraries -----------------------------------------------------------------------------


def _ldconfig_paths(root: str, env: Mapping[str, str], errors: list[str]) -> list[str]:
    if root not in ("", "/"):
        return []  # the loader cache belongs to the real machine, not to a fake tree
    ldconfig = next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)),
        None,
    ) or which("ldconfig", env)
    if ldconfig is None:
        errors.append("ldconfig not found")
        return []
    result = run_command([ldconfig, "-p"], timeout=_TIMEOUT, env=env)
    if result.returncode != 0:
        errors.append(f"ldconfig -p failed: {result.error or result.stderr.strip()[:200]}")
        return []
    return [
        e.path
        for e in parse_ldconfig(result.stdout)
        if library_name(os.path.basename(e.path)) and native_entry(e.flags)
    ]


def native_entry(flags: str, machine: str | None = None) -> bool:
    """Whether a loader-cache entry is for this machine's ABI (skip i386 copies on x86_64)."""
    machine = machine or platform.machine()
    marker = _LDCONFIG_ARCH.get(machine)
    return marker is None or marker in flags


def _dir_libs(folder: str) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names if library_name(n)]


def _pip_dists(site_dir: str) -> dict[str, tuple[str, str]]:
    """Stem -> (distribution name, version) of the nvidia-* wheels in one site-packages."""
    dists: dict[str, tuple[str, str]] = {}
    try:
        names = os.listdir(site_dir)
    except OSError:
        return dists
    for name in names:
        m = re.match(r"^(nvidia_[A-Za-z0-9_]+?)-([^-]+)\.dist-info$", name)
        if not m:
            continue
        dist, version = m.group(1), m.group(2)
        stem = re.sub(r"_cu\d+$", "", dist[len("nvidia_") :])
        dists[stem.lower()] = (dist.replace("_", "-"), version)
    return dists


def _cudnn_header_version(lib_dir: str, root: str) -> str | None:
    """cuDNN version from headers next to a library folder or in the system include folders."""
    parent = os.path.dirname(lib_dir.rstrip("/"))
    patterns = [
        os.path.join(parent, "include", "cudnn_version*.h"),
        rooted(root, "/usr/include/cudnn_version*.h"),
        rooted(root, "/usr/include/*-linux-gnu/cudnn_version*.h"),
    ]
    for pattern in patterns:
        for header in sorted(glob.glob(pattern)):
            version = parse_cudnn_header(read_text(header) or "")
            if version:
                return version
    return None


def _library(path: str, source: str, root: str, dist_version: str | None = None) -> Library:
    name = library_name(os.path.basename(path)) or "unknown"
    real = os.path.realpath(path)
    version = version_from_filename(os.path.basename(real)) or version_from_filename(
        os.path.basename(path)
    )
    if name == "cudnn" and (version is None or version.count(".") < 2):
        # A bare soname (libcudnn.so.9) says only the major: ask the headers or the wheel.
        header = _cudnn_header_version(os.path.dirname(path), root)
        if header and (version is None or header.split(".")[0] == version.split(".")[0]):
            version = header
    if dist_version and (version is None or version.count(".") < 2):
        version = ".".join(dist_version.split(".")[:3])
    return Library(name=name, version=version, path=_unroot(root, path), source=source)


def _add(out: dict[str, Library], path: str, lib: Library) -> None:
    out.setdefault(os.path.realpath(path), lib)


def find_libraries(
    root: str,
    env: Mapping[str, str],
    pyenv: PyEnv,
    toolkits: tuple[Toolkit, ...],
    errors: list[str],
) -> tuple[Library, ...]:
    """CUDA-family libraries, each file once (the first source that found it wins)."""
    out: dict[str, Library] = {}
    for path in _ldconfig_paths(root, env, errors):
        _add(out, path, _library(path, "ldconfig", root))

    for entry in env.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if entry:
            folder = rooted(root, entry) if os.path.isabs(entry) else entry
            for path in _dir_libs(folder):
                _add(out, path, _library(path, "LD_LIBRARY_PATH", root))

    for tk in toolkits:
        base = rooted(root, tk.path)
        for sub in ("lib64", "lib", "targets/*/lib"):
            for folder in sorted(glob.glob(os.path.join(base, sub))):
                for path in _dir_libs(folder):
                    _add(out, path, _library(path, "toolkit", root))

    for site_dir in pyenv.site_dirs():
        dists = _pip_dists(site_dir)
        for path in sorted(glob.glob(os.path.join(site_dir, "nvidia", "*", "lib", "lib*.so*"))):
            name = library_name(os.path.basename(path))
            if name is None:
                continue
            folder = os.path.basename(os.path.dirname(os.path.dirname(path)))
            dist = dists.get(folder.lower()) or dists.get(_PIP_STEMS.get(name, ""))
            source = f"pip:{dist[0]}" if dist else f"pip:nvidia/{folder}"
            _add(out, path, _library(path, source, "/", dist[1] if dist else None))

    conda = env.get("CONDA_PREFIX")
    if conda:
        for path in _dir_libs(os.path.join(rooted(root, conda), "lib")):
            _add(out, path, _library(path, "conda", root))
    return tuple(out.values())


# Libraries that carry the toolkit's version (not the driver's, not cuDNN's or NCCL's own).
_TOOLKIT_VERSIONED = frozenset({"cudart", "cublas", "cublasLt", "nvrtc", "nvjitlink"})


def _with_toolkit_versions(
    libraries: tuple[Library, ...], toolkits: tuple[Toolkit, ...]
) -> tuple[Library, ...]:
    """A bare soname (libcudart.so.13) inside a toolkit folder gets that toolkit's version."""
    out = []
    for lib in libraries:
        if lib.name in _TOOLKIT_VERSIONED and (lib.version is None or "." not in lib.version):
            tk = next(
                (
                    t
                    for t in toolkits
                    if t.version and lib.path.startswith(t.path.rstrip("/") + "/")
                ),
                None,
            )
            if tk is not None and (lib.version is None or tk.version.split(".")[0] == lib.version):
                lib = Library(lib.name, tk.version, lib.path, lib.source)
        out.append(lib)
    return tuple(out)


def probe_cuda(root: str, env: Mapping[str, str], pyenv: PyEnv) -> Cuda:
    errors: list[str] = []
    toolkits = find_toolkits(root, env)
    libraries = _with_toolkit_versions(find_libraries(root, env, pyenv, toolkits, errors), toolkits)
    return Cuda(toolkits=toolkits, libraries=libraries, errors=tuple(errors))
