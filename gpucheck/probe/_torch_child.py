"""Run by path in a child process: import torch, exercise every visible GPU, print one JSON line.

This file must not import gpucheck (it runs in interpreters where gpucheck is not installed)
and prints its result as the last stdout line, marked with "gpucheck_torch_child".
"""

import json
import os
import re
import sys
import time
import traceback

MARKER = "gpucheck_torch_child"
MATMUL_N = 256
MATMUL_TOLERANCE = 1e-2  # fp32 GEMM of N(0,1) 256x256 inputs differs by ~1e-4 between devices
_LIB_RE = re.compile(
    r"/lib(cuda|cudart|cudnn|cublas|cublasLt|nccl|nvJitLink|nvrtc|nvidia-ml|cusparse|cufft"
    r"|curand|cusolver|cupti)[A-Za-z0-9_]*\.so[0-9.]*$"
)


def _emit(result):
    result[MARKER] = 1
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


def _last_line(exc):
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _cudnn_version_text(value):
    if not isinstance(value, int) or value <= 0:
        return None
    if value >= 90000:  # cuDNN 9: major*10000 + minor*100 + patch
        return f"{value // 10000}.{value % 10000 // 100}.{value % 100}"
    return f"{value // 1000}.{value % 1000 // 100}.{value % 100}"


def _nccl_version_text(value):
    if isinstance(value, (tuple, list)):
        return ".".join(str(v) for v in value)
    if isinstance(value, int):  # older torch: 2_18_05 style integer
        if value >= 10000:
            return f"{value // 10000}.{value % 10000 // 100}.{value % 100}"
        return f"{value // 1000}.{value % 1000 // 100}.{value % 100}"
    return None


def _loaded_libraries():
    paths = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if _LIB_RE.search(path) and path not in paths:
                        paths.append(path)
    except OSError:
        pass
    return paths


def _matmul(torch, index):
    gen = torch.Generator().manual_seed(1234 + index)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    b = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    expected = a @ b
    device = torch.device("cuda", index)
    got = (a.to(device) @ b.to(device)).cpu()
    torch.cuda.synchronize(device)
    err = float((got - expected).abs().max())
    ok = err == err and err <= MATMUL_TOLERANCE  # err != err: NaN
    return ok, err


def _device(torch, index):
    info = {"index": index}
    try:
        props = torch.cuda.get_device_properties(index)
        info["name"] = props.name
        info["capability"] = f"{props.major}.{props.minor}"
        info["total_memory_bytes"] = int(props.total_memory)
        info["matmul_ok"], info["matmul_max_error"] = _matmul(torch, index)
    except Exception as exc:  # noqa: BLE001 - a CUDA error is the finding, report it
        info["error"] = _last_line(exc)
    return info


def main():
    # `python path/to/_torch_child.py` puts gpucheck/probe/ first on sys.path: drop it so that
    # none of our module names can shadow one that torch imports.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    result = {"status": "ok", "errors": []}
    start = time.perf_counter()
    try:
        import torch
    except ModuleNotFoundError as exc:
        missing = getattr(exc, "name", None)
        result["status"] = "not-installed" if missing == "torch" else "import-error"
        result["error"] = _last_line(exc)
        _emit(result)
        return
    except BaseException as exc:  # noqa: BLE001 - OSError (libcudnn), ImportError, SystemExit...
        result["status"] = "import-error"
        result["error"] = _last_line(exc)
        _emit(result)
        return
    result["import_time_s"] = round(time.perf_counter() - start, 3)
    errors = result["errors"]

    def attempt(key, fn):
        try:
            result[key] = fn()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{key}: {_last_line(exc)}")

    attempt("version", lambda: str(torch.__version__))
    attempt("cuda_version", lambda: torch.version.cuda)
    attempt("hip_version", lambda: getattr(torch.version, "hip", None))
    attempt("cuda_available", lambda: bool(torch.cuda.is_available()))
    attempt("device_count", lambda: int(torch.cuda.device_count()))
    attempt("arch_list", lambda: list(torch.cuda.get_arch_list()))
    attempt("cudnn_version", lambda: _cudnn_version_text(torch.backends.cudnn.version()))
    if result.get("cuda_available"):
        attempt("nccl_version", lambda: _nccl_version_text(torch.cuda.nccl.version()))
        attempt("bf16_supported", lambda: bool(torch.cuda.is_bf16_supported()))
        torch.backends.cuda.matmul.allow_tf32 = False  # compare fp32 with fp32, not TF32
        result["devices"] = [_device(torch, i) for i in range(result.get("device_count") or 0)]
    libs = _loaded_libraries()
    result["loaded_libraries"] = libs
    result["cudnn_path"] = next(
        (p for p in libs if os.path.basename(p).startswith("libcudnn.so")), None
    )
    _emit(result)


if __name__ == "__main__":
    main()
