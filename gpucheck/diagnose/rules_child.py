"""Rules GC211-GC215: what the torch child saw (import, hang, crash, CUDA, each device).

Sources: the CUDA Runtime API error list (cudaErrorDevicesUnavailable: "CUDA-capable device(s)
is/are busy or unavailable"); PyTorch's "CUDA semantics" notes (TF32 and
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE); cuBLAS documentation, cublasComputeType_t (TF32 and bf16
fast modes accumulate in fp32); signal numbers from signal(7).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpucheck.diagnose import facts, rule
from gpucheck.diagnose.rules_torch import (
    _cudnn_fix,
    _driver_ev,
    _gpus_ev,
    _ld_fix,
    _missing_arch_gpus,
    _ok_rt,
    _shadowing_dirs,
    _torch_ev,
)
from gpucheck.findings import Finding, Severity
from gpucheck.snapshot import Snapshot

ERROR, WARN, INFO = Severity.ERROR, Severity.WARN, Severity.INFO


# --- the torch child ------------------------------------------------------------------------

_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV"}


def _first_line(text: str | None, limit: int = 200) -> str:
    if not text:
        return "(no message)"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    # the last line of a traceback says what went wrong
    line = lines[-1] if lines else text.strip()
    return line[:limit]


@rule("GC211")
def child_import_error(s: Snapshot) -> Iterator[Finding]:
    """GC211: `import torch` failed in the child."""
    rt = s.torch_runtime
    if rt is None or rt.status != "import-error":
        return
    err = rt.error or ""
    low = err.lower()
    shadow = _shadowing_dirs(s)
    if "undefined symbol" in low:
        title = (
            "import torch fails: undefined symbol (CUDA libraries of different versions are mixed)"
        )
        fix = _ld_fix(s, [d.path for d in shadow]) if shadow else _cudnn_fix(s)
    elif "libcudnn" in low:
        title = "import torch fails: cuDNN library not found"
        fix = _cudnn_fix(s)
    elif "cannot open shared object" in low:
        title = "import torch fails: a shared library is missing"
        fix = _cudnn_fix(s).replace("its nvidia-cudnn wheel", "the nvidia-* wheels it needs")
    else:
        title = "import torch fails"
        fix = (
            'Read the full error with `python -c "import torch"`; if it is a broken install, '
            + _cudnn_fix(s).replace("so that pip pulls its nvidia-cudnn wheel", "cleanly")
        )
    yield Finding(
        "GC211",
        ERROR,
        title,
        (f"torch child: {_first_line(err)}", _torch_ev(s)),
        fix=fix,
    )


@rule("GC212")
def child_timeout(s: Snapshot) -> Iterator[Finding]:
    """GC212: the torch child hung past its timeout."""
    rt = s.torch_runtime
    if rt is None or rt.status != "timeout":
        return
    limit = rt.timeout_s or rt.duration_s
    ev = [f"torch child killed after {limit:.0f} s" if limit else "torch child timed out"]
    if rt.import_time_s is not None:
        ev.append(
            f"import torch took {rt.import_time_s:.1f} s; the hang came after (CUDA init or a GPU op)"
        )
    if rt.error:
        ev.append(f"last output: {_first_line(rt.error)}")
    yield Finding(
        "GC212",
        ERROR,
        "torch hung while initialising CUDA or running on the GPU",
        tuple(ev),
        fix="Check whether `nvidia-smi` itself hangs, look for Xid errors (`sudo dmesg | grep -i "
        "xid`) and stuck GPU processes (`nvidia-smi --query-compute-apps=pid,name "
        "--format=csv`); enable persistence mode (`sudo nvidia-smi -pm 1`); reset the GPU "
        "(`sudo nvidia-smi -r -i N`) or reboot. A first run that JIT-compiles PTX can also be "
        "slow: retry with a longer timeout for the torch child.",
    )


@rule("GC213")
def child_crash(s: Snapshot) -> Iterator[Finding]:
    """GC213: the torch child died (signal or abnormal exit)."""
    rt = s.torch_runtime
    if rt is None or rt.status != "crash":
        return
    rc = rt.returncode
    sig = _SIGNALS.get(-rc) if rc is not None and rc < 0 else None
    how = f"killed by {sig}" if sig else f"exit code {rc}"
    ev = [f"torch child {how}"]
    if rt.error:
        ev.append(f"stderr: {_first_line(rt.error)}")
    hint = (
        "SIGKILL usually means the kernel's OOM killer (`sudo dmesg | grep -i oom`). "
        if sig == "SIGKILL"
        else ""
    )
    yield Finding(
        "GC213",
        ERROR,
        f"torch crashed while probing the GPU ({how})",
        tuple(ev),
        fix=f'{hint}Reproduce with `python -X faulthandler -c "import torch; torch.cuda.init(); '
        "print(torch.ones(1, device='cuda'))\"`, check `sudo dmesg | grep -i -E 'xid|nvrm'`, and "
        "reinstall torch if the crash is in import.",
    )


@rule("GC214")
def cuda_unavailable(s: Snapshot) -> Iterator[Finding]:
    """GC214: torch.cuda.is_available() is False although NVML sees GPUs (no other rule says why)."""
    rt = _ok_rt(s)
    if rt is None or rt.cuda_available is not False or not facts.healthy_gpus(s):
        return
    if facts.is_cpu_torch(s) or facts.is_rocm_torch(s):
        return  # GC202
    vis = facts.cuda_visible_devices(s)
    if vis is not None and not vis.visible:
        return  # GC109
    fit = facts.driver_fit(s)
    if fit is not None and fit.verdict == "too-old":
        return  # GC203
    paths = {n.path for n in s.system.device_nodes}
    if (
        s.system.os == "linux"
        and not s.system.wsl
        and facts.gpu_nodes(s)
        and "/dev/nvidia-uvm" not in paths
    ):
        return  # GC114
    if all(g.mig_enabled and g.mig_devices == () for g in facts.healthy_gpus(s)):
        return  # GC309: MIG on with no instances leaves CUDA no device
    ev = [
        "torch child: torch.cuda.is_available() is False",
        _gpus_ev(s),
        _torch_ev(s),
        _driver_ev(s),
    ]
    if rt.error:
        ev.append(f"torch said: {_first_line(rt.error)}")
    yield Finding(
        "GC214",
        ERROR,
        "torch cannot use CUDA although the driver sees the GPU(s)",
        tuple(ev),
        fix='See CUDA\'s own error: `python -c "import torch; torch.cuda.init()"`. Common causes: '
        "the nvidia-uvm module (`sudo rmmod nvidia_uvm; sudo modprobe nvidia_uvm`, often after "
        "suspend/resume), a GPU held in a bad state (`sudo nvidia-smi -r`), or a reboot pending.",
    )


# cudaErrorDevicesUnavailable: what CUDA says when a GPU in Exclusive-Process (or Prohibited)
# compute mode is already held by another process (CUDA Runtime API, error types).
_BUSY = "busy or unavailable"


@rule("GC215")
def device_failures(s: Snapshot) -> Iterator[Finding]:
    """GC215: a GPU failed the child's matmul check, gave wrong results, or is held elsewhere."""
    rt = _ok_rt(s)
    if rt is None:
        return
    explained = {i for idx in _missing_arch_gpus(s).values() for i in idx}
    for d in rt.devices:
        gpu = facts.nvml_gpu_for_cuda(s, d.index)
        index = gpu.index if gpu is not None else None
        same = index if gpu is not None else d.index  # old snapshots: no UUID to join on
        if same in explained and (gpu is not None or "CUDA_VISIBLE_DEVICES" not in s.system.env):
            continue  # GC205 explains it
        where = f"cuda:{d.index}"  # the NVML index goes in `gpu`, which renderers show
        label = facts.cuda_label(s, d.index)
        name = d.name or (gpu.name if gpu else None) or "GPU"
        if d.error and _BUSY in d.error.lower():
            mode = gpu.compute_mode if gpu is not None else None
            yield Finding(
                "GC215",
                WARN,
                f"{name} ({where}) is busy: another process holds it",
                (
                    f"{label}: {_first_line(d.error)}",
                    f"compute mode: {mode or 'unknown'}",
                ),
                fix="In Exclusive-Process mode one process at a time may use the GPU: see which "
                "one holds it (`nvidia-smi --query-compute-apps=pid,process_name,gpu_uuid "
                "--format=csv`), wait for it or pick another GPU with CUDA_VISIBLE_DEVICES. "
                "Nothing is wrong with the GPU itself.",
                gpu=index,
            )
        elif d.error:
            yield Finding(
                "GC215",
                ERROR,
                f"torch failed on {name} ({where})",
                (f"{label}: {_first_line(d.error)}",),
                fix="Rerun with `CUDA_LAUNCH_BLOCKING=1` to see the failing call; check `sudo "
                "dmesg | grep -i xid` and the GPU's ECC and health findings.",
                gpu=index,
            )
        elif d.matmul_ok is False:
            err = f"{d.matmul_max_error:.3g}" if d.matmul_max_error is not None else "?"
            ev = [f"{label}: matmul max abs error {err} against the exact fp64 result"]
            if d.matmul_tolerance is not None:
                ev.append(
                    f"tolerance {d.matmul_tolerance:.3g} for {d.matmul_precision or 'fp32'} "
                    "(inputs chosen so that a working GPU is exact in fp32, TF32 and bf16)"
                )
            yield Finding(
                "GC215",
                ERROR,
                f"Matrix multiply on {name} ({where}) disagrees with the exact result",
                tuple(ev),
                fix="Wrong results point at faulty GPU memory or compute: drain this GPU, check "
                "`nvidia-smi -q -d ECC,ROW_REMAPPER`, run `dcgmi diag -r 3`, and RMA it if it repeats.",
                gpu=index,
            )
