"""Throughput, step-time, memory, FLOPs and MFU bookkeeping.

FLOPs follow the approximation of the PaLM paper (Chowdhery et al. 2022, appendix B) and
nanoGPT's `estimate_mfu`: training FLOPs for a sequence of length s = 6*N*s + 12*L*h*s**2, where N is the number of
matmul weights (embeddings, LayerNorm and biases excluded) and the second term is the QK^T and
AV attention matmuls, forward plus backward. "Model" FLOPs count only the real (non-pad)
tokens; "padded" FLOPs count what the hardware computed on the padded batch.
"""

from __future__ import annotations

import math
import re
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Peak:
    """Dense peak TFLOP/s of one GPU model (no 2:4 sparsity), per dtype, and where it came from."""

    names: tuple[str, ...]  # exact device names (torch.cuda.get_device_name / NVML), any case
    fp32: float | None  # plain FP32 (CUDA cores)
    tf32: float | None  # TF32 tensor cores (fp32 matmuls with TF32 enabled)
    bf16: float | None  # BF16 tensor cores, FP32 accumulate
    fp16: float | None  # FP16 tensor cores, FP32 accumulate
    source: str


# Dense peaks from the vendors' datasheets and the tables of torchtitan and nanochat, each row naming
# its source (a "recalled" source is a placeholder until checked). Names are
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


# --- per-step figures and the rates made of them ----------------------------------------------


@dataclass(frozen=True)
class Step:
    """What one optimizer step processed."""

    samples: int
    real_tokens: int  # non-pad tokens
    padded_tokens: int  # samples x padded width
    model_flops: float  # training FLOPs of the real tokens
    padded_flops: float  # training FLOPs of the padded batch

    @classmethod
    def of(cls, lengths: Sequence[int], width: int, n_weights: int, layers: int, hidden: int):
        return cls(
            samples=len(lengths),
            real_tokens=sum(lengths),
            padded_tokens=width * len(lengths),
            model_flops=sum(sequence_flops(n_weights, layers, hidden, n) for n in lengths),
            padded_flops=len(lengths) * sequence_flops(n_weights, layers, hidden, width),
        )


class StepTimer:
    """Per-step wall times; CUDA events on a GPU (no per-step host sync), perf_counter on CPU.

    A chain is one epoch: a step's time runs from its start to the next step's start, and the
    last step of a chain ends at `close_chain()`.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.marks: list = []
        self.chains: list[list] = []

    def _mark(self):
        if self.cuda:
            import torch

            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def step(self) -> None:
        self.marks.append(self._mark())

    def close_chain(self) -> None:
        if self.marks:
            self.marks.append(self._mark())
            self.chains.append(self.marks)
            self.marks = []

    def durations(self) -> list[float]:
        self.close_chain()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        out: list[float] = []
        for chain in self.chains:
            for a, b in zip(chain, chain[1:], strict=False):
                out.append(a.elapsed_time(b) / 1000.0 if self.cuda else b - a)
        return out


def warmup_steps_excluded(total_steps: int) -> int:
    """Steps left out of the steady-state figures (allocator and kernel warm-up, compilation)."""
    return 0 if total_steps < 2 else min(10, max(1, total_steps // 20))


@dataclass
class Throughput:
    """Steady-state rates over the timed steps (the first `warmup` steps excluded)."""

    samples_per_s: float | None
    real_tokens_per_s: float | None
    padded_tokens_per_s: float | None
    model_flops_per_s: float | None
    padded_flops_per_s: float | None
    step_times: list[float] = field(default_factory=list)  # the timed steps
    excluded: int = 0

    @classmethod
    def of(cls, steps: Sequence[Step], durations: Sequence[float], warmup: int) -> Throughput:
        first = min(warmup, max(0, len(durations) - 1))
        timed = list(durations[first:])
        seconds = sum(timed)
        counted = steps[first : first + len(timed)]

        def rate(attr: str) -> float | None:
            if not timed or seconds <= 0:
                return None
            return sum(getattr(s, attr) for s in counted) / seconds

        return cls(
            rate("samples"),
            rate("real_tokens"),
            rate("padded_tokens"),
            rate("model_flops"),
            rate("padded_flops"),
            timed,
            len(durations) - len(timed),
        )


@dataclass
class Utilization:
    """Model FLOPs utilisation against the GPU's dense peak for the dtype that ran."""

    peak_tflops: float | None
    peak_tflops_source: str | None
    mfu: float | None
    padded_flops_utilization: float | None
    mfu_note: str | None

    @classmethod
    def of(cls, gpu_name: str | None, dtype: str, tf32: bool, rates: Throughput) -> Utilization:
        peak = find_peak(gpu_name)
        peak_tf = peak_tflops(peak, dtype, tf32) if peak else None

        def util(flops_per_s: float | None) -> float | None:
            return flops_per_s / (peak_tf * 1e12) if (peak_tf and flops_per_s) else None

        if gpu_name is None:
            note = "no MFU on CPU"
        elif peak is None:
            note = f"no peak FLOP/s on record for {gpu_name!r}"
        elif peak_tf is None:
            note = f"no {dtype} peak on record for {gpu_name!r}"
        else:
            note = None
        return cls(
            peak_tf,
            peak.source if peak else None,
            util(rates.model_flops_per_s),
            util(rates.padded_flops_per_s),
            note,
        )
