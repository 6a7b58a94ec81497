"""The probes: the only part of gpucheck that touches the machine. `collect` never raises.

NVML runs in a daemon thread and the torch child in its own process group, both started
first, so that the static probes (files, loader cache, package metadata) run meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone

import gpucheck
from gpucheck.probe.clean import clean
from gpucheck.probe.cuda_libs import probe_cuda
from gpucheck.probe.fallbacks import (
    PROC_VERSION,
    SMI_TIMEOUT,
    SYS_VERSION,
    proc_driver_version,
    query_nvidia_smi,
    sys_module_version,
)
from gpucheck.probe.identity import probe_identity
from gpucheck.probe.nvml import NvmlProbe, NvmlResult
from gpucheck.probe.parsers import decode_cudnn_version
from gpucheck.probe.pyenv import inspect_python
from gpucheck.probe.system import probe_system
from gpucheck.probe.torch_runtime import TorchChild
from gpucheck.probe.torch_static import probe_torch_static
from gpucheck.snapshot import Driver, Gpu, Snapshot, TorchRuntime

__all__ = ["collect", "decode_cudnn_version"]


def _driver_and_gpus(
    nvml: NvmlResult, root: str, env: Mapping[str, str], smi_timeout: float
) -> tuple[Driver, tuple[Gpu, ...]]:
    """Merge NVML with the fallbacks; Driver.source names the source that gave the version."""
    sys_version = sys_module_version(root)
    proc_version = proc_driver_version(root)
    errors = list(nvml.errors)
    smi_error = None
    gpus = nvml.gpus
    smi_driver = None
    if nvml.error is not None:
        # NVML is unusable: nvidia-smi may still work (e.g. no pynvml), or say why it fails.
        smi = query_nvidia_smi(root, env, smi_timeout)
        smi_error = smi.error
        smi_driver = smi.driver_version
        if not gpus:
            gpus = smi.gpus
    candidates = (
        (nvml.driver_version, "nvml"),
        (sys_version, SYS_VERSION),
        (proc_version, PROC_VERSION),
        (smi_driver, "nvidia-smi"),
    )
    version, source = next(((v, s) for v, s in candidates if v), (None, None))
    driver = Driver(
        version=version,
        cuda_version=nvml.cuda_version,
        source=source,
        kernel_module_version=proc_version or sys_version,
        nvml_library_version=nvml.nvml_version,
        nvml_error=nvml.error,
        nvidia_smi_error=smi_error,
        errors=tuple(errors),
    )
    return driver, gpus


def collect(
    *,
    torch_child: bool = True,
    torch_timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    root: str = "/",
    nvml_timeout: float = 10.0,
    smi_timeout: float = SMI_TIMEOUT,
    python: str | None = None,
) -> Snapshot:
    """Probe this machine and return a Snapshot.

    Args:
        torch_child: also run the torch child process (import, devices, matmul).
        torch_timeout: seconds the torch child may take before it is killed.
        env: environment to inspect and to pass to children (default: os.environ).
        root: prefix for every system path read (/proc, /sys, /dev, /etc, /usr), for tests.
        nvml_timeout: seconds to wait for NVML before recording "Timeout".
        smi_timeout: seconds nvidia-smi may take (it is asked only when NVML failed).
        python: interpreter whose torch is inspected (default: this one).
    """
    started = time.perf_counter()
    env = dict(os.environ if env is None else env)
    # NVML's limit bounds the wait for the next GPU; while a torch child runs (and initialises
    # the same GPUs) NVML may take as long as the child may, which the caller has bounded.
    nvml = NvmlProbe(nvml_timeout, max_total=max(nvml_timeout, torch_timeout if torch_child else 0))
    pyenv = inspect_python(python, env)
    torch = probe_torch_static(pyenv)

    runtime: TorchRuntime | None = None
    child: TorchChild | None = None
    if torch_child:
        if not torch.installed and torch.error is None:
            runtime = TorchRuntime(
                status="not-installed", error="no torch distribution in " + pyenv.executable
            )
        else:
            child = TorchChild(pyenv.executable, torch_timeout, env)

    system = probe_system(root, env, pyenv)
    cuda = probe_cuda(root, env, pyenv)
    driver, gpus = _driver_and_gpus(nvml.wait(), root, env, smi_timeout)
    if child is not None:
        runtime = child.wait()
    return clean(  # probed text may hold control characters: made visible once, here
        Snapshot(
            system=system,
            driver=driver,
            gpus=gpus,
            cuda=cuda,
            torch=torch,
            torch_runtime=runtime,
            identity=probe_identity(root, env),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            gpucheck_version=gpucheck.__version__,
            probe_seconds=round(time.perf_counter() - started, 4),
        )
    )
