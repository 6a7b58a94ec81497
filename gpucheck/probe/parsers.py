"""Pure parsers for the text the probes read: no I/O here, so each one is tested on literal text.

Every parser accepts any string (including garbage) and returns None / empty results for text
it does not understand; none of them raises on bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = r"\d+\.\d+(?:\.\d+)*"


def decode_cuda_version(value: int) -> str | None:
    """Decode NVML/CUDA's integer version: 12040 -> "12.4", 13000 -> "13.0".

    nvml.h: major = v // 1000, minor = (v % 1000) // 10. cudaRuntimeGetVersion and the
    CUDART_VERSION / CUDA_VERSION macros use the same encoding.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def decode_cudnn_version(value: int) -> str | None:
    """Decode cuDNN's integer version: 90100 -> "9.1.0", 91002 -> "9.10.2", 8902 -> "8.9.2".

    cuDNN 9 encodes major*10000 + minor*100 + patch; cuDNN <= 8 used major*1000 + minor*100 +
    patch. No 8.x minor reached 10, so v >= 90000 tells the two apart.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    if value >= 90000:
        return f"{value // 10000}.{value % 10000 // 100}.{value % 100}"
    return f"{value // 1000}.{value % 1000 // 100}.{value % 100}"


def parse_proc_driver_version(text: str) -> str | None:
    """Kernel module version from /proc/driver/nvidia/version.

    Proprietary module:
        NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024
    Open module:
        NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  555.42.02  Release Build  (...)
    """
    for line in text.splitlines():
        if not line.startswith("NVRM version:"):
            continue
        m = re.search(rf"Kernel Module(?: for \S+)?\s+({_VERSION})\b", line)
        if m:
            return m.group(1)
    return None


def parse_sys_module_version(text: str) -> str | None:
    """/sys/module/nvidia/version holds just the version: "550.54.14\\n"."""
    value = text.strip()
    return value if re.fullmatch(_VERSION, value) else None


@dataclass(frozen=True)
class SmiGpu:
    """One row of `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`."""

    index: int
    name: str | None
    uuid: str | None
    pci_bus_id: str | None
    driver_version: str | None
    compute_cap: str | None
    memory_total_mib: int | None
    memory_used_mib: int | None


SMI_FIELDS = (
    "index",
    "name",
    "uuid",
    "pci.bus_id",
    "driver_version",
    "compute_cap",
    "memory.total",
    "memory.used",
)


def _smi_value(raw: str) -> str | None:
    value = raw.strip()
    # nvidia-smi writes "[N/A]", "[Not Supported]", "[Unknown Error]" for missing values.
    if not value or (value.startswith("[") and value.endswith("]")) or value == "N/A":
        return None
    return value


def _smi_int(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def parse_nvidia_smi_csv(text: str, fields: tuple[str, ...] = SMI_FIELDS) -> list[SmiGpu] | None:
    """Rows of `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`.

    Sample line (fields as in SMI_FIELDS):
        0, NVIDIA H100 80GB HBM3, GPU-5c3f..., 00000000:18:00.0, 550.54.15, 9.0, 81559, 0
    Returns None when any non-empty line does not have the expected shape (garbage, an error
    message), an empty list for empty output.
    """
    gpus: list[SmiGpu] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # GPU names contain no commas, so a plain split is exact for these fields.
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(fields):
            return None
        row = dict(zip(fields, (_smi_value(p) for p in parts), strict=True))
        index = _smi_int(row.get("index"))
        if index is None:
            return None
        gpus.append(
            SmiGpu(
                index=index,
                name=row.get("name"),
                uuid=row.get("uuid"),
                pci_bus_id=row.get("pci.bus_id"),
                driver_version=row.get("driver_version"),
                compute_cap=row.get("compute_cap"),
                memory_total_mib=_smi_int(row.get("memory.total")),
                memory_used_mib=_smi_int(row.get("memory.used")),
            )
        )
    return gpus


def parse_nvcc_version(text: str) -> str | None:
    """Toolkit version from `nvcc --version`: "Cuda compilation tools, release 13.0, V13.0.88"."""
    m = re.search(r"release (\d+\.\d+)\b", text)
    return m.group(1) if m else None


def parse_cuda_version_json(data: object) -> str | None:
    """Toolkit version from a parsed version.json: {"cuda": {"version": "12.4.1"}} -> "12.4"."""
    if not isinstance(data, dict):
        return None
    cuda = data.get("cuda")
    version = cuda.get("version") if isinstance(cuda, dict) else None
    if not isinstance(version, str):
        return None
    m = re.match(r"(\d+\.\d+)", version)
    return m.group(1) if m else None


def parse_cudart_header(text: str) -> str | None:
    """Toolkit version from cuda_runtime_api.h: "#define CUDART_VERSION  13000" -> "13.0"."""
    m = re.search(r"^#define\s+CUDART_VERSION\s+(\d+)\s*$", text, re.MULTILINE)
    return decode_cuda_version(int(m.group(1))) if m else None


def parse_cudnn_header(text: str) -> str | None:
    """cuDNN version from cudnn_version.h (cuDNN >= 8) or cudnn.h (7.x).

    Sample:
        #define CUDNN_MAJOR 9
        #define CUDNN_MINOR 1
        #define CUDNN_PATCHLEVEL 0
    """
    parts = []
    for key in ("CUDNN_MAJOR", "CUDNN_MINOR", "CUDNN_PATCHLEVEL"):
        m = re.search(rf"^#define\s+{key}\s+(\d+)\b", text, re.MULTILINE)
        if not m:
            return None
        parts.append(str(int(m.group(1))))
    return ".".join(parts)


@dataclass(frozen=True)
class LdconfigEntry:
    soname: str  # "libcudart.so.13"
    path: str  # "/usr/local/cuda-13.0/lib/libcudart.so.13"
    flags: str = ""  # "libc6,x86-64"; plain "libc6" is a 32-bit library on x86_64


def parse_ldconfig(text: str) -> list[LdconfigEntry]:
    """Entries of `ldconfig -p`.

    Sample:
        538 libs found in cache `/etc/ld.so.cache'
        \\tlibcudart.so.13 (libc6,x86-64) => /usr/local/cuda-13.0/lib/libcudart.so.13
    """
    entries = []
    for line in text.splitlines():
        m = re.match(r"^\s+(\S+)\s+\(([^)]*)\)(?:\s+OS ABI:[^=]*)?\s+=>\s+(\S.*?)\s*$", line)
        if m:
            entries.append(LdconfigEntry(soname=m.group(1), path=m.group(3), flags=m.group(2)))
    return entries


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value pairs of /etc/os-release (values may be quoted)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        result[key.strip()] = value
    return result


def parse_proc_modules(text: str) -> set[str]:
    """Loaded module names from /proc/modules: "nvidia 56623104 10 nvidia_uvm, Live 0x0"."""
    names = set()
    for line in text.splitlines():
        fields = line.split()
        if fields:
            names.add(fields[0])
    return names


def parse_kfd_gfx(text: str) -> str | None:
    """The gfx target of a KFD topology node ("gfx_target_version 90402" -> "gfx942").

    The number is major*10000 + minor*100 + stepping, and the stepping is written in hex in
    the target name (90010 -> gfx90a). CPU nodes have 0: None.
    """
    m = re.search(r"^gfx_target_version\s+(\d+)\s*$", text, re.MULTILINE)
    if not m or int(m.group(1)) == 0:
        return None
    n = int(m.group(1))
    return f"gfx{n // 10000}{n // 100 % 100}{n % 100:x}"


def parse_meminfo_total(text: str) -> int | None:
    """MemTotal in bytes from /proc/meminfo: "MemTotal:       131896372 kB"."""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB\s*$", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def parse_torch_version_py(text: str) -> dict[str, str | None]:
    """`cuda`, `hip` and `__version__` from torch/version.py, without importing it.

    Sample (torch 2.x):
        __version__ = '2.9.1+cu128'
        cuda: Optional[str] = '12.8'
        hip: Optional[str] = None
    """
    result: dict[str, str | None] = {}
    for key in ("__version__", "cuda", "hip"):
        m = re.search(
            rf"^{re.escape(key)}\s*(?::[^=]*)?=\s*(?:'([^']*)'|\"([^\"]*)\"|None)\s*$",
            text,
            re.MULTILINE,
        )
        if m:
            value = m.group(1) if m.group(1) is not None else m.group(2)
            result[key] = value
    return result


def local_tag(version: str | None) -> str | None:
    """The local part of a version: "2.9.1+cu128" -> "cu128", "2.9.1" -> None."""
    if not version or "+" not in version:
        return None
    return version.split("+", 1)[1] or None


def version_from_filename(name: str) -> str | None:
    """Version in a shared library's file name: "libcudnn.so.9.1.0" -> "9.1.0"."""
    m = re.search(r"\.so\.(\d+(?:\.\d+)*)$", name)
    return m.group(1) if m else None
