"""The result document (docs/finetune.md, `schema_version` 1), built from the run's dataclasses."""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass

import torch

from finetune.evaluate import EvalResult
from finetune.gate import Gate, LossSummary
from finetune.perf import Throughput, Utilization, percentile

SCHEMA_VERSION = 1


@dataclass
class ModelInfo:
    source: str
    architecture: str
    parameters: int
    matmul_weights: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    num_labels: int
    attn_implementation: str | None
    compiled: bool
    load_note: str | None = None  # what loading a checkpoint initialised or left unused


@dataclass
class RunConfig:
    preset: str
    epochs: int
    max_steps: int | None
    total_steps: int
    batch_size: int
    eval_batch_size: int
    max_length: int
    lr: float
    warmup_ratio: float
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    seed: int
    optimizer: str
    schedule: str
    grad_scaler: bool
    tf32: bool
    length_bucketing_window: int
    pad_to_multiple_of: int
    f1_gate: float | None


@dataclass
class TrainTotals:
    """Counts and times of the training loop as a whole (evaluation excluded)."""

    steps: int
    epochs_completed: float
    samples: int
    real_tokens: int
    padded_tokens: int
    model_flops: float
    wall_s: float
    setup_s: float
    tokenizer_s: float
    time_to_gate_s: float | None
    peak_memory_bytes: int | None
    peak_memory_source: str


def train_section(
    totals: TrainTotals, rates: Throughput, util: Utilization, loss: LossSummary
) -> dict:
    t, r = totals, rates
    timed = r.step_times
    return {
        "steps": t.steps,
        "epochs_completed": t.epochs_completed,
        "samples": t.samples,
        "wall_s": t.wall_s,
        "setup_s": t.setup_s,
        "tokenizer_s": t.tokenizer_s,
        "samples_per_s": r.samples_per_s,
        "samples_per_s_wall": t.samples / t.wall_s if t.wall_s > 0 else None,
        "real_tokens_per_s": r.real_tokens_per_s,
        "padded_tokens_per_s": r.padded_tokens_per_s,
        "padding_fraction": 1 - t.real_tokens / t.padded_tokens if t.padded_tokens else None,
        "step_time_p50_s": percentile(timed, 50),
        "step_time_p95_s": percentile(timed, 95),
        "step_time_mean_s": sum(timed) / len(timed) if timed else None,
        "timed_steps": len(timed),
        "warmup_steps_excluded": r.excluded,
        "peak_memory_bytes": t.peak_memory_bytes,
        "peak_memory_source": t.peak_memory_source,
        "model_flops_per_token": t.model_flops / t.real_tokens if t.real_tokens else None,
        "model_tflops_per_s": r.model_flops_per_s / 1e12 if r.model_flops_per_s else None,
        "padded_tflops_per_s": r.padded_flops_per_s / 1e12 if r.padded_flops_per_s else None,
        "peak_tflops": util.peak_tflops,
        "peak_tflops_source": util.peak_tflops_source,
        "mfu": util.mfu,
        "padded_flops_utilization": util.padded_flops_utilization,
        "mfu_note": util.mfu_note,
        "time_to_gate_s": t.time_to_gate_s,
        "loss_first": loss.first,
        "loss_last": loss.last,
        "loss_curve": loss.curve,
    }


def versions() -> dict:
    import tokenizers
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "cuda": torch.version.cuda,
    }


def document(
    *,
    device: torch.device,
    dtype: str,
    model: ModelInfo,
    config: RunConfig,
    data: dict,
    train: dict,
    evaluation: EvalResult,
    history: list[dict],
    gate: Gate,
    output_dir: str | None,
) -> dict:
    status = "nan-loss" if not gate.loss_finite else ("ok" if gate.passed else "gate-failed")
    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "error": None,
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dtype": dtype,
        "model": dataclasses.asdict(model),
        "config": dataclasses.asdict(config),
        "data": data,
        "train": train,
        "eval": evaluation.to_json(history),
        "gate": dataclasses.asdict(gate),
        "output_dir": output_dir,
        "versions": versions(),
        "host": {"cpu_threads": torch.get_num_threads(), "machine": platform.machine()},
    }
