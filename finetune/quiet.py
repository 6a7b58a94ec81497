"""Third-party noise: off by default (one line of ours instead), all of it with --verbose.

transformers prints a weight-loading report and progress bars, huggingface_hub progress bars,
tokenizers a fork warning, and torch/transformers Python warnings; none of them is the user's
business in a smoke benchmark unless asked for.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable


def configure(verbose: bool, hub_bars: bool = False) -> None:
    """Silence (or not) the libraries before and after they are imported; `hub_bars` keeps
    huggingface_hub's download progress bars (--download on a terminal)."""
    if verbose:
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not hub_bars:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for module in ("transformers", "torch", "huggingface_hub", "tokenizers", "accelerate"):
        warnings.filterwarnings("ignore", module=module)
    try:
        from transformers.utils import logging as tf_logging
    except ImportError:
        return
    tf_logging.set_verbosity_error()
    if not hub_bars:  # (transformers turns huggingface_hub's bars off with its own)
        tf_logging.disable_progress_bar()


def load_note(
    missing: Iterable[str], unexpected: Iterable[str], mismatched: Iterable, num_labels: int
) -> str | None:
    """One line for what transformers' load report says at length, or None when all loaded."""
    parts = []
    if any(k.startswith("classifier.") for k in missing) or mismatched:
        parts.append(f"classifier head initialised for {num_labels} labels")
    other = sorted({k.split(".")[0] for k in missing if not k.startswith("classifier.")})
    if other:
        parts.append("newly initialised: " + ", ".join(other))
    unused = sorted({k.split(".")[0] for k in unexpected})
    if unused:
        parts.append(", ".join(unused) + " unused")
    return "; ".join(parts) or None
