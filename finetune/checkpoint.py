"""`--model`: find the checkpoint folder (a path, the local hub cache, or a download when
`--download` allows it) and check it before any training starts."""

from __future__ import annotations

import os
import re

from finetune.prep import InputError

DOWNLOAD_TIMEOUT_S = 30  # per request: connecting, and each read of a file being downloaded
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


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def set_hub_timeouts(seconds: int = DOWNLOAD_TIMEOUT_S) -> None:
    """Bound every hub request (huggingface_hub reads these once, at import)."""
    os.environ["HF_HUB_ETAG_TIMEOUT"] = str(seconds)
    os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = str(seconds)
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

    if download:
        set_hub_timeouts()
    try:
        return snapshot_download(
            model,
            allow_patterns=MODEL_FILES,
            local_files_only=not download,
            etag_timeout=DOWNLOAD_TIMEOUT_S,
        )
    except Exception as exc:  # huggingface_hub raises many kinds; all mean "not available"
        if not download:
            raise InputError(
                f"--model {model}: no such folder, and not in the local Hugging Face cache "
                "(--download fetches it)"
            ) from None
        from huggingface_hub import constants

        raise InputError(
            f"--model {model}: cannot download it from {constants.ENDPOINT}: {_first_line(exc)}"
        ) from None


def check_checkpoint(model: str, path: str):
    """The checkpoint's config, after checking that this benchmark can fine-tune it."""
    from transformers import AutoConfig

    if not os.path.isfile(os.path.join(path, "config.json")):
        raise InputError(f"--model {model}: no config.json in that folder")
    try:
        cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"--model {model}: cannot read its config: {_first_line(exc)}") from None
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
