"""Torch as a child process that imports it sees it; a hang or crash of the child is data."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from gpucheck.proc import Child, last_marked_json
from gpucheck.snapshot import TorchDevice, TorchRuntime

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_torch_child.py")
MARKER = "gpucheck_torch_child"
_TAIL = 2000


def _tail(text: str) -> str:
    return text.strip()[-_TAIL:]


def parse_child_output(stdout: str) -> dict[str, Any] | None:
    """The child's result: the last stdout line that is a JSON object with the marker."""
    return last_marked_json(stdout, MARKER)


def _opt(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return (
        value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else None
    )


def _device(data: Any, fallback_index: int) -> TorchDevice:
    if not isinstance(data, dict):
        return TorchDevice(index=fallback_index, error="malformed device entry")
    index = _opt(data, "index", int)
    return TorchDevice(
        index=fallback_index if index is None else index,
        name=_opt(data, "name", str),
        capability=_opt(data, "capability", str),
        total_memory_bytes=_opt(data, "total_memory_bytes", int),
        matmul_ok=_opt(data, "matmul_ok", bool),
        matmul_max_error=_opt(data, "matmul_max_error", float),
        error=_opt(data, "error", str),
        uuid=_opt(data, "uuid", str),
        pci_bus_id=_opt(data, "pci_bus_id", str),
        matmul_tolerance=_opt(data, "matmul_tolerance", float),
        matmul_precision=_opt(data, "matmul_precision", str),
        bf16_supported=_opt(data, "bf16_supported", bool),
    )


def runtime_from_child(
    data: dict[str, Any], duration: float, timeout: float, returncode: int | None
) -> TorchRuntime:
    """Turn the child's JSON into TorchRuntime, ignoring values of the wrong type."""
    errors = [e for e in data.get("errors") or () if isinstance(e, str)]
    error = _opt(data, "error", str) or ("; ".join(errors) if errors else None)
    status = _opt(data, "status", str) or "crash"
    devices = data.get("devices") if isinstance(data.get("devices"), list) else []
    arch = data.get("arch_list") if isinstance(data.get("arch_list"), list) else []
    libs = data.get("loaded_libraries") if isinstance(data.get("loaded_libraries"), list) else []
    return TorchRuntime(
        status=status,
        duration_s=round(duration, 3),
        import_time_s=_opt(data, "import_time_s", float),
        error=error,
        returncode=returncode,
        version=_opt(data, "version", str),
        cuda_version=_opt(data, "cuda_version", str),
        hip_version=_opt(data, "hip_version", str),
        cuda_available=_opt(data, "cuda_available", bool),
        device_count=_opt(data, "device_count", int),
        devices=tuple(_device(d, i) for i, d in enumerate(devices)),
        arch_list=tuple(a for a in arch if isinstance(a, str)),
        cudnn_version=_opt(data, "cudnn_version", str),
        cudnn_path=_opt(data, "cudnn_path", str),
        nccl_version=_opt(data, "nccl_version", str),
        bf16_supported=_opt(data, "bf16_supported", bool),
        loaded_libraries=tuple(p for p in libs if isinstance(p, str)),
        timeout_s=timeout,
    )


class TorchChild:
    """The child process, started at once so that it runs while the static probes do."""

    def __init__(self, python: str, timeout: float, env: Mapping[str, str] | None = None):
        self.timeout = timeout
        self.child = Child([python, CHILD], timeout=timeout, env=env)

    def wait(self) -> TorchRuntime:
        done = self.child.wait()
        proc = self.child.proc
        if proc is None:
            exc = self.child.start_exc  # set whenever proc is None
            why = f"could not start {self.child.argv[0]}: {getattr(exc, 'strerror', None) or exc}"
            return TorchRuntime(status="crash", error=why, timeout_s=self.timeout)
        if done.timed_out:
            err = done.stderr
            return TorchRuntime(
                status="timeout",
                duration_s=round(done.seconds, 3),
                error=f"torch child did not finish within {self.timeout:g} s"
                + (f"; stderr: {_tail(err)}" if err.strip() else ""),
                returncode=proc.returncode,
                timeout_s=self.timeout,
            )
        data = parse_child_output(done.stdout)
        if data is None:
            why = _tail(done.stderr) or _tail(done.stdout) or "no output"
            if proc.returncode is not None and proc.returncode < 0:
                why = f"killed by signal {-proc.returncode}; {why}"
            return TorchRuntime(
                status="crash",
                duration_s=round(done.seconds, 3),
                error=why,
                returncode=proc.returncode,
                timeout_s=self.timeout,
            )
        runtime = runtime_from_child(data, done.seconds, self.timeout, proc.returncode)
        if proc.returncode != 0:
            # It reported, then died (e.g. a crash in a CUDA library at exit): keep both facts.
            note = (
                f"child exited with {proc.returncode} after reporting: {_tail(done.stderr)[-300:]}"
            )
            runtime = dataclasses.replace(
                runtime, error=f"{runtime.error}; {note}" if runtime.error else note
            )
        return runtime


def run_torch_child(
    python: str, timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> TorchRuntime:
    """Run the torch child to the end (or to its timeout)."""
    return TorchChild(python, timeout, env).wait()
