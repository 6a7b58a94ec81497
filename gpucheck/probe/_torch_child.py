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
# The matmul check uses inputs that are multiples of 1/16 below 8 in magnitude: exact in
# fp32, TF32 (10 mantissa bits) and bf16 (7), with products and every partial sum exact in
# fp32 (all multiples of 1/256 below 2**16). A working GPU then returns the exact result
# whatever precision cuBLAS runs in (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 in NVIDIA's
# containers forces TF32), so any difference from the fp64 reference is a fault. The
# tolerance is a safety margin from the probabilistic rounding-error bound of an N-term dot
# product, |err| <= LAMBDA * sqrt(N) * u * (|A||B|)ij (Higham and Mary, "A New Approach to
# Probabilistic Rounding Error Analysis", SIAM J. Sci. Comput. 41(5), 2019), with u the unit
# roundoff of the precision in force.
MATMUL_LAMBDA = 8.0
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "tf32": 2.0**-11, "bf16": 2.0**-8}
# Measured precision: max error / max (|A||B|)ij of a 256^2 N(0,1) matmul against fp64 is
# ~1e-7 in fp32, ~8e-5 in TF32 and ~7e-4 in bf16 (inputs rounded as cuBLAS would, on a CPU);
# these cut between them.
_MEASURED = ((2.0**-12, "bf16"), (2.0**-17, "tf32"))
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


def exact_inputs(torch, seed):
    """Two N x N fp32 matrices whose product is exact in fp32, TF32 and bf16 (see above)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.clamp(torch.round(torch.randn(MATMUL_N, MATMUL_N, generator=gen) * 16), -127, 127)
    b = torch.clamp(torch.round(torch.randn(MATMUL_N, MATMUL_N, generator=gen) * 16), -127, 127)
    return a / 16, b / 16


def precision_in_force(torch, env):
    """The coarsest precision a float32 matmul may run in, from torch's flags and the env."""
    if torch.get_float32_matmul_precision() == "medium":
        return "bf16"
    tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
    # TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 makes cuBLAS use TF32 whatever allow_tf32 says
    # (torch's CUDA semantics notes); NVIDIA_TF32_OVERRIDE=0 turns TF32 off in cuBLAS.
    if env.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "0") not in ("", "0"):
        tf32 = True
    if env.get("NVIDIA_TF32_OVERRIDE") == "0":
        tf32 = False
    return "tf32" if tf32 else "fp32"


def matmul_tolerance(torch, a, b, precision, inputs_exact):
    """The error bound of a @ b on a working device running in `precision`.

    TF32 and bf16 GEMMs round the inputs, then multiply and accumulate in fp32 (cuBLAS
    compute types CUBLAS_COMPUTE_32F_FAST_TF32 / _FAST_16BF): the bound has the fp32
    accumulation term, plus an input rounding term unless the inputs are exact in that
    precision. For `exact_inputs` it is the fp32 bound in every mode, so forcing TF32
    neither fails a working GPU nor hides a faulty one.
    """
    scale = float((a.double().abs() @ b.double().abs()).max())
    u = UNIT_ROUNDOFF["fp32"]
    if not inputs_exact:
        u += 2 * UNIT_ROUNDOFF[precision]
    return MATMUL_LAMBDA * MATMUL_N**0.5 * u * scale


def judge_matmul(torch, a, b, got, tolerance):
    """(ok, max abs error) of `got` against the fp64 product; NaN or Inf is never ok."""
    expected = a.double() @ b.double()
    err = float((got.double() - expected).abs().max())
    return bool(err == err and err <= tolerance), err  # err != err: NaN


def measured_precision(torch, a, b, got):
    """What precision a float32 matmul of N(0,1) inputs evidently ran in."""
    scale = float((a.double().abs() @ b.double().abs()).max()) or 1.0
    ratio = float((got.double() - a.double() @ b.double()).abs().max()) / scale
    return next((name for cut, name in _MEASURED if ratio > cut), "fp32")


def _matmul(torch, index, precision):
    device = torch.device("cuda", index)
    a, b = exact_inputs(torch, 1234 + index)
    got = (a.to(device) @ b.to(device)).cpu()
    torch.cuda.synchronize(device)
    tolerance = matmul_tolerance(torch, a, b, precision, inputs_exact=True)
    ok, err = judge_matmul(torch, a, b, got, tolerance)
    gen = torch.Generator().manual_seed(99 + index)
    ra = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    rb = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    measured = measured_precision(torch, ra, rb, (ra.to(device) @ rb.to(device)).cpu())
    order = ("fp32", "tf32", "bf16")
    if ok and order.index(measured) > order.index(precision):
        precision = measured  # an override the flags did not show: record what ran
    return {
        "matmul_ok": ok,
        "matmul_max_error": err,
        "matmul_tolerance": tolerance,
        "matmul_precision": precision,
    }


def _uuid(props):
    raw = getattr(props, "uuid", None)
    if raw is None:
        return None
    text = str(raw)
    return text if text.upper().startswith(("GPU-", "MIG-")) else "GPU-" + text


def _bus_id(props):
    parts = [getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device")]
    if not all(isinstance(p, int) for p in parts):
        return None
    return f"{parts[0]:08X}:{parts[1]:02X}:{parts[2]:02X}.0"  # NVML's busId spelling


def _bf16_native(torch, index):
    with torch.cuda.device(index):
        try:  # including_emulation: torch >= 2.3; older torch counts only native support
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:
            return bool(torch.cuda.is_bf16_supported())


def _device(torch, index, precision):
    info = {"index": index}
    try:
        props = torch.cuda.get_device_properties(index)
        info["name"] = props.name
        info["capability"] = f"{props.major}.{props.minor}"
        info["total_memory_bytes"] = int(props.total_memory)
        info["uuid"] = _uuid(props)
        info["pci_bus_id"] = _bus_id(props)
        info["bf16_supported"] = _bf16_native(torch, index)
        info.update(_matmul(torch, index, precision))
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
        torch.backends.cuda.matmul.allow_tf32 = False  # ask for fp32; the env may override it
        precision = precision_in_force(torch, os.environ)
        result["devices"] = [
            _device(torch, i, precision) for i in range(result.get("device_count") or 0)
        ]
        flags = [d.get("bf16_supported") for d in result["devices"]]
        if flags and all(isinstance(f, bool) for f in flags):
            result["bf16_supported"] = all(flags)  # native bf16 on every device
        else:
            attempt("bf16_supported", lambda: _bf16_native(torch, torch.cuda.current_device()))
    libs = _loaded_libraries()
    result["loaded_libraries"] = libs
    result["cudnn_path"] = next(
        (p for p in libs if os.path.basename(p).startswith("libcudnn.so")), None
    )
    _emit(result)


if __name__ == "__main__":
    main()
