"""`--model`: find the checkpoint folder (a path, the local hub cache, or a download when
`--download` allows it) and check it before any training starts."""

from __future__ import annotations

import os
import re
from contextlib import nullcontext

from finetune.hub_data import bounded_hub_requests, timed_out, timeout_s
from finetune.prep import InputError, first_line

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # a fast tokenizer, or the WordPiece vocabulary
# what a BERT token-classification fine-tune needs from a hub repository (no other formats)
MODEL_FILES = [
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def set_hub_timeouts(seconds: float) -> None:
    """Bound every hub request (huggingface_hub reads these once, at import)."""
    os.environ["HF_HUB_ETAG_TIMEOUT"] = f"{seconds:g}"
    os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = f"{seconds:g}"
    try:
        from huggingface_hub import constants
    except ImportError:
        return
    constants.HF_HUB_ETAG_TIMEOUT = seconds
    constants.HF_HUB_DOWNLOAD_TIMEOUT = seconds


def resolve_model(model: str, download: bool) -> str:
    """The local folder of `--model`: the path itself, or the hub id's cached (or, with
    `--download`, freshly downloaded) snapshot."""
    if os.path.isdir(model):
        return model
    if os.path.exists(model):
        raise InputError(f"--model {model}: not a folder")
    looks_like_path = model.startswith(("/", ".", "~")) or os.sep + os.sep in model
    if looks_like_path or not _HUB_ID.fullmatch(model) or model.count("/") > 1:
        raise InputError(f"--model {model}: no such folder")
    from huggingface_hub import snapshot_download

    seconds = timeout_s()
    if download:
        set_hub_timeouts(seconds)
    try:
        # snapshot_download's first request (repo_info) passes no timeout: bound them all
        with bounded_hub_requests(seconds) if download else nullcontext():
            return snapshot_download(
                model,
                allow_patterns=MODEL_FILES,
                local_files_only=not download,
                etag_timeout=seconds,
            )
    except Exception as exc:  # huggingface_hub raises many kinds; all mean "not available"
        if not download:
            raise InputError(
                f"--model {model}: no such folder, and not in the local Hugging Face cache "
                "(--download fetches it)"
            ) from None
        from huggingface_hub import constants

        why = f"no answer within {seconds:g} s" if timed_out(exc) else first_line(exc)
        raise InputError(
            f"--model {model}: cannot download it from {constants.ENDPOINT}: {why}"
        ) from None


def check_checkpoint(model: str, path: str):
    """The checkpoint's config, after checking that this benchmark can fine-tune it."""
    from transformers import AutoConfig

    if not os.path.isfile(os.path.join(path, "config.json")):
        raise InputError(f"--model {model}: no config.json in that folder")
    try:
        cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"--model {model}: cannot read its config: {first_line(exc)}") from None
    if cfg.model_type != "bert":
        raise InputError(
            f"--model {model}: a {cfg.model_type!r} checkpoint; this benchmark fine-tunes BERT "
            "checkpoints (model_type 'bert')"
        )
    if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
        raise InputError(
            f"--model {model}: no tokenizer in that folder (needs tokenizer.json or vocab.txt)"
        )
    return cfg
