"""Run by path in a child process: measure the node's GPUs together and print JSON lines.

P2P access matrix and a short P2P copy per pair, NCCL all_reduce over all local GPUs at a few
sizes (torch.cuda.nccl, one process), pinned host<->device bandwidth per GPU, bf16 (fp16 before
Ampere) matmul TFLOP/s per GPU. After each stage it prints the figures so far as one JSON line
marked "gpucheck_node_child", so that when a stage hangs and the parent kills us, the parent
still knows every figure measured before it and which stage hung.

Like gpucheck/probe/_torch_child.py this file must not import gpucheck. argv[1], when given,
is a JSON object of settings (see DEFAULTS).
"""

import json
import os
import socket
import sys
import time
import traceback

MARKER = "gpucheck_node_child"
DEFAULTS = {
    "allreduce_sizes": [1 << 20, 1 << 24, 1 << 26, 1 << 28],  # bytes
    "p2p_bytes": 1 << 26,
    "h2d_bytes": 1 << 28,
    "matmul_n": 8192,
    "iters": 5,
}


def _emit(result):
    result[MARKER] = 1
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


def _last_line(exc):
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _timed(torch, devices, fn, iters):
    """Seconds per call of fn(), after one warm-up, synchronising every device involved."""
    fn()
    for d in devices:
        torch.cuda.synchronize(d)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    for d in devices:
        torch.cuda.synchronize(d)
    return (time.perf_counter() - t0) / iters


def _nccl_version(torch):
    v = torch.cuda.nccl.version()
    return ".".join(str(x) for x in v) if isinstance(v, (tuple, list)) else str(v)


def _matmul(torch, i, cfg):
    props = torch.cuda.get_device_properties(i)
    dtype, name = (torch.bfloat16, "bf16") if props.major >= 8 else (torch.float16, "fp16")
    n = cfg["matmul_n"] if props.total_memory > 12 * 2**30 else cfg["matmul_n"] // 2
    dev = torch.device("cuda", i)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    s = _timed(torch, [dev], lambda: a @ b, max(cfg["iters"], 10))
    return round(2 * n**3 / s / 1e12, 2), name


def _host_copies(torch, i, cfg):
    dev = torch.device("cuda", i)
    host = torch.empty(cfg["h2d_bytes"], dtype=torch.uint8).pin_memory()
    gpu = torch.empty(cfg["h2d_bytes"], dtype=torch.uint8, device=dev)
    h2d = _timed(torch, [dev], lambda: gpu.copy_(host, non_blocking=True), cfg["iters"])
    d2h = _timed(torch, [dev], lambda: host.copy_(gpu, non_blocking=True), cfg["iters"])
    return round(cfg["h2d_bytes"] / h2d / 1e9, 2), round(cfg["h2d_bytes"] / d2h / 1e9, 2)


def _p2p_copy(torch, i, j, cfg):
    src = torch.empty(cfg["p2p_bytes"], dtype=torch.uint8, device=torch.device("cuda", i))
    dst = torch.empty(cfg["p2p_bytes"], dtype=torch.uint8, device=torch.device("cuda", j))
    s = _timed(torch, [src.device, dst.device], lambda: dst.copy_(src), cfg["iters"])
    return round(cfg["p2p_bytes"] / s / 1e9, 2)


def _allreduce(torch, n, size, cfg):
    import torch.cuda.nccl as nccl

    count = size // 4
    tensors = [torch.ones(count, device=torch.device("cuda", i)) for i in range(n)]
    s = _timed(torch, [t.device for t in tensors], lambda: nccl.all_reduce(tensors), cfg["iters"])
    algbw = size / s / 1e9
    # nccl-tests doc/PERFORMANCE.md: busbw = algbw * 2(n-1)/n for all_reduce
    return {
        "bytes": size,
        "time_s": s,
        "algbw_gbps": round(algbw, 2),
        "busbw_gbps": round(algbw * 2 * (n - 1) / n, 2),
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    cfg = dict(DEFAULTS)
    if len(sys.argv) > 1:
        cfg.update(json.loads(sys.argv[1]))
    result = {"status": "ok", "host": socket.gethostname(), "stage": "import torch", "errors": []}
    _emit(result)
    try:
        import torch
    except BaseException as exc:  # noqa: BLE001 - missing torch or a broken install is data
        result.update(status="no-torch", error=_last_line(exc))
        _emit(result)
        return
    result["torch_version"] = str(torch.__version__)
    result["cuda_available"] = bool(torch.cuda.is_available())
    if not result["cuda_available"]:
        result["stage"] = "done"
        _emit(result)
        return
    n = torch.cuda.device_count()
    errors = result["errors"]
    try:
        result["nccl_version"] = _nccl_version(torch)
    except Exception:  # noqa: BLE001 - a torch without NCCL
        result["nccl_version"] = None
    gpus = []
    result["gpus"] = gpus
    for i in range(n):
        g = {"index": i}
        gpus.append(g)
        try:
            props = torch.cuda.get_device_properties(i)
            g["name"], g["capability"] = props.name, f"{props.major}.{props.minor}"
            if hasattr(props, "pci_bus_id"):
                dom = getattr(props, "pci_domain_id", 0)
                g["pci_bus_id"] = f"{dom:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
            result["stage"] = f"matmul on GPU {i}"
            _emit(result)
            g["matmul_tflops"], g["matmul_dtype"] = _matmul(torch, i, cfg)
            result["stage"] = f"host copies on GPU {i}"
            _emit(result)
            g["h2d_gbps"], g["d2h_gbps"] = _host_copies(torch, i, cfg)
        except Exception as exc:  # noqa: BLE001
            g["error"] = _last_line(exc)
        torch.cuda.empty_cache()
    p2p = [[None] * n for _ in range(n)]
    result["p2p"], result["p2p_copy_gbps"], result["p2p_copy_errors"] = p2p, {}, {}
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            try:
                p2p[i][j] = bool(torch.cuda.can_device_access_peer(i, j))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"can_device_access_peer({i}, {j}): {_last_line(exc)}")
    for i in range(n):
        for j in range(n):
            if i != j and p2p[i][j]:
                result["stage"] = f"P2P copy GPU {i} -> GPU {j}"
                _emit(result)
                try:
                    result["p2p_copy_gbps"][f"{i}-{j}"] = _p2p_copy(torch, i, j, cfg)
                except Exception as exc:  # noqa: BLE001
                    result["p2p_copy_errors"][f"{i}-{j}"] = _last_line(exc)
    result["allreduce"] = []
    if n >= 2:
        for size in cfg["allreduce_sizes"]:
            result["stage"] = f"NCCL all_reduce of {size} bytes over {n} GPUs"
            _emit(result)
            try:
                result["allreduce"].append(_allreduce(torch, n, size, cfg))
            except Exception as exc:  # noqa: BLE001
                result["allreduce_error"] = _last_line(exc)
                break
            torch.cuda.empty_cache()
    result["stage"] = "done"
    _emit(result)


if __name__ == "__main__":
    main()
