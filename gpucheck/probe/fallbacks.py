"""What we can learn about the driver when NVML is unusable: /sys, /proc and nvidia-smi."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gpucheck.probe._util import read_text, rooted, run_command, which
from gpucheck.probe.parsers import (
    SMI_FIELDS,
    parse_nvidia_smi_csv,
    parse_proc_driver_version,
    parse_sys_module_version,
)
from gpucheck.snapshot import Gpu

SYS_VERSION = "/sys/module/nvidia/version"
PROC_VERSION = "/proc/driver/nvidia/version"
SMI_TIMEOUT = 5.0
MIB = 1024 * 1024


def sys_module_version(root: str) -> str | None:
    text = read_text(rooted(root, SYS_VERSION))
    return parse_sys_module_version(text) if text is not None else None


def proc_driver_version(root: str) -> str | None:
    text = read_text(rooted(root, PROC_VERSION))
    return parse_proc_driver_version(text) if text is not None else None


@dataclass(frozen=True)
class SmiResult:
    driver_version: str | None = None
    gpus: tuple[Gpu, ...] = ()
    error: str | None = None


def _smi_argv(smi: str, fields: tuple[str, ...]) -> list[str]:
    return [smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def query_nvidia_smi(root: str, env: Mapping[str, str], timeout: float | None = None) -> SmiResult:
    """GPUs from `nvidia-smi --query-gpu`; failures come back as `error` text."""
    timeout = SMI_TIMEOUT if timeout is None else timeout
    smi = which("nvidia-smi", env)
    if smi is None:
        wsl_smi = rooted(root, "/usr/lib/wsl/lib/nvidia-smi")  # WSL2 keeps it off PATH at times
        smi = wsl_smi if os.path.isfile(wsl_smi) else None
    if smi is None:
        return SmiResult(error="nvidia-smi not found on PATH")
    fields = SMI_FIELDS
    result = run_command(_smi_argv(smi, fields), timeout=timeout, env=env)
    if result.returncode not in (None, 0) and "compute_cap" in result.stdout + result.stderr:
        # Drivers before ~510 reject the compute_cap field ("not a valid field to query").
        fields = tuple(f for f in SMI_FIELDS if f != "compute_cap")
        result = run_command(_smi_argv(smi, fields), timeout=timeout, env=env)
    if result.returncode is None:
        return SmiResult(error=f"nvidia-smi {result.error}")
    if result.returncode != 0:
        why = _first_line(result.stdout) or _first_line(result.stderr) or "no output"
        return SmiResult(error=f"nvidia-smi exited with {result.returncode}: {why}")
    rows = parse_nvidia_smi_csv(result.stdout, fields)
    if rows is None:
        return SmiResult(
            error=f"nvidia-smi printed unexpected output: {_first_line(result.stdout)}"
        )
    gpus = tuple(
        Gpu(
            index=row.index,
            name=row.name,
            uuid=row.uuid,
            pci_bus_id=row.pci_bus_id,
            compute_capability=row.compute_cap,
            memory_total_bytes=None if row.memory_total_mib is None else row.memory_total_mib * MIB,
            memory_used_bytes=None if row.memory_used_mib is None else row.memory_used_mib * MIB,
            source="nvidia-smi",
        )
        for row in rows
    )
    driver = next((row.driver_version for row in rows if row.driver_version), None)
    return SmiResult(driver_version=driver, gpus=gpus)
