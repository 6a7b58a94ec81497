"""Mixed precision: autocast and the fp16 gradient scaler, on every torch the project supports.

`torch.amp.GradScaler(device)` exists from torch 2.3 on; before it only the CUDA one,
`torch.cuda.amp.GradScaler`, does (pyproject allows torch >= 2.0). A disabled scaler is a
pass-through (`scale` returns the loss, `step` calls `optimizer.step()`), so the training loop
has one code path for every dtype.
"""

from __future__ import annotations

import contextlib
import warnings

import torch


def autocast(device: torch.device, dtype: str):
    """Autocast to bf16 or fp16; nothing for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def has_grad_scaler(device_type: str) -> bool:
    """Whether this torch can scale fp16 gradients on this kind of device."""
    return hasattr(torch.amp, "GradScaler") or device_type == "cuda"


def grad_scaler(device_type: str, enabled: bool):
    """A GradScaler for `device_type`, enabled only for fp16 (bf16 and fp32 need none)."""
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler(device_type, enabled=enabled)
    if enabled and device_type != "cuda":
        raise ValueError(f"torch {torch.__version__} has no fp16 gradient scaler for {device_type}")
    with warnings.catch_warnings():  # newer torch deprecates this spelling; older has no other
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cuda.amp.GradScaler(enabled=enabled)
