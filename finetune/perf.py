"""Throughput, step-time, memory, FLOPs and MFU bookkeeping.

FLOPs follow the PaLM/nanoGPT approximation (see shared/research/ner_anchors.md 3.1):
training FLOPs for a sequence of length s = 6*N*s + 12*L*h*s**2, where N is the number of
matmul weights (embeddings, LayerNorm and biases excluded) and the second term is the QK^T and
AV attention matmuls, forward plus backward. "Model" FLOPs count only the real (non-pad)
tokens; "padded" FLOPs count what the hardware computed on the padded batch.
"""

from __future__ import annotations

import math
import re
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Peak:
    """Dense peak TFLOP/s of one GPU model (no 2:4 sparsity), per dtype, and where it came from."""

    names: tuple[str, ...]  # exact device names (torch.cuda.get_device_name / NVML), any case
    fp32: float | None  # plain FP32 (CUDA cores)
    tf32: float | None  # TF32 tensor cores (fp32 matmuls with TF32 enabled)
    bf16: float | None  # BF16 tensor cores, FP32 accumulate
    fp16: float | None  # FP16 tensor cores, FP32 accumulate
    source: str


# Figures from shared/research/ner_anchors.md section 3.3, with the sources it names. Names are
# the strings the CUDA driver reports; they are matched exactly (case and spacing aside) so that
# e.g. "NVIDIA L40" never takes the "NVIDIA L4" or "NVIDIA L40S" figures.
PEAKS: tuple[Peak, ...] = (
    Peak(
        ("Tesla T4",),
        8.1,
        None,
        None,
        65.0,
        "NVIDIA T4 datasheet, quoted second-hand (geektopia.es, sysrqmts)",
    ),
    Peak(
        ("Tesla V100-SXM2-16GB", "Tesla V100-SXM2-32GB"),
        15.7,
        None,
        None,
        125.0,
        "NVIDIA V100 datasheet via the NVIDIA developer blog ('up to 125 Tensor TFLOPS')",
    ),
    Peak(
        ("Tesla V100-PCIE-16GB", "Tesla V100-PCIE-32GB"),
        14.0,
        None,
        None,
        112.0,
        "NVIDIA V100 PCIe datasheet as cited in AlexeyAB/darknet#7019",
    ),
    Peak(
        ("NVIDIA A10",),
        31.2,
        62.5,
        125.0,
        125.0,
        "NVIDIA A10 datasheet (recalled, not retrieved: placeholder)",
    ),
    Peak(
        (
            "NVIDIA A100-SXM4-40GB",
            "NVIDIA A100-SXM4-80GB",
            "NVIDIA A100-PCIE-40GB",
            "NVIDIA A100 80GB PCIe",
        ),
        19.5,
        156.0,
        312.0,
        312.0,
        "NVIDIA A100 datasheet via glennklockwood.com; torchtitan get_peak_flops 312e12",
    ),
    Peak(
        ("NVIDIA L4",),
        30.3,
        60.0,
        121.0,
        121.0,
        "NVIDIA L4 datasheet (sparse figures halved); nanochat 121e12",
    ),
    Peak(
        ("NVIDIA L40S",),
        91.6,
        183.0,
        362.0,
        362.0,
        "NVIDIA L40S datasheet as reproduced by mullet.se; torchtitan/nanochat 362e12",
    ),
    Peak(
        ("NVIDIA GeForce RTX 3090",),
        35.6,
        35.6,
        71.0,
        71.0,
        "nanochat 71e12 (FP32 accumulate); TF32 figure recalled",
    ),
    Peak(
        ("NVIDIA GeForce RTX 4090",),
        82.6,
        82.6,
        165.2,
        165.2,
        "Ada table by hmc-tech (FP32 accumulate); nanochat 165.2e12",
    ),
    Peak(
        ("NVIDIA H100 80GB HBM3",),
        67.0,
        494.7,
        989.0,
        989.0,
        "NVIDIA H100 SXM5 datasheet (dense = half the sparse figure); torchtitan 989e12",
    ),
    Peak(
        ("NVIDIA H100 PCIe",),
        51.0,
        378.0,
        756.0,
        756.0,
        "NVIDIA H100 PCIe datasheet; torchtitan 756e12",
    ),
    Peak(("NVIDIA H100 NVL",), None, None, 835.0, 835.0, "torchtitan get_peak_flops"),
    Peak(
        ("NVIDIA H200",),
        67.0,
        494.7,
        989.0,
        989.0,
        "same compute as H100 SXM5; torchtitan and nanochat 989e12",
    ),
    Peak(("NVIDIA H200 NVL",), None, None, 836.0, 836.0, "nanochat"),
    Peak(
        ("NVIDIA B200",),
        80.0,
        1100.0,
        2250.0,
        2250.0,
        "glennklockwood.com B200 table (HGX, 1000 W); torchtitan 2.25e15",
    ),
    Peak(
        ("NVIDIA GB200",),
        90.0,
        1250.0,
        2500.0,
        2500.0,
        "glennklockwood.com GB200 table (per GPU); nanochat 2.5e15",
    ),
    Peak(
        ("NVIDIA GeForce RTX 5090",),
        None,
        None,
        209.5,
        209.5,
        "nanochat 209.5e12 (FP32 accumulate), second-hand",
    ),
)


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip()).lower()


def find_peak(gpu_name: str | None) -> Peak | None:
    if not gpu_name:
        return None
    key = _norm(gpu_name)
    for peak in PEAKS:
        if any(_norm(n) == key for n in peak.names):
            return peak
    return None


def peak_tflops(peak: Peak, dtype: str, tf32: bool) -> float | None:
    """The peak for the precision the matmuls actually ran in."""
    if dtype == "bf16":
        return peak.bf16
    if dtype == "fp16":
        return peak.fp16
    return (peak.tf32 or peak.fp32) if tf32 else peak.fp32


def matmul_weights(hidden: int, layers: int, intermediate: int, num_labels: int) -> int:
    """N: the weights of every matmul in a BERT encoder plus the token-classification head."""
    per_layer = 4 * hidden * hidden + 2 * hidden * intermediate
    return layers * per_layer + hidden * num_labels


def sequence_flops(n_weights: int, layers: int, hidden: int, length: int) -> float:
    """Training FLOPs (forward + backward) of one sequence of `length` tokens."""
    return 6.0 * n_weights * length + 12.0 * layers * hidden * length * length


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def process_peak_rss() -> int | None:
    """Peak resident set size of this process in bytes (Linux reports KiB, macOS bytes)."""
    try:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None
    return int(rss if sys.platform == "darwin" else rss * 1024)
