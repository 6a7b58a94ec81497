"""`hf:NAME[:CONFIG]`: a token-classification split from the Hugging Face hub's parquet export.

The hub converts every public dataset it can read into parquet on the `refs/convert/parquet`
branch, as ``CONFIG/SPLIT/0000.parquet`` (more shards as 0001, ...), with the dataset's
features (ClassLabel names included) in each file's ``huggingface`` schema metadata. That
branch is read here with huggingface_hub and pyarrow, not with `datasets`: `datasets` >= 4 no
longer runs loading scripts, and `eriktks/conll2003` (where the canonical CoNLL-2003 lives) is
a loading-script repository whose data is only in that export.

Nothing is fetched without `download`: then only the local hub cache is read. With it, every
request has a timeout, and a request that got no answer is not retried (one line, not a hang).
"""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from finetune.config import LABELS
from finetune.conll import _TAG, ConllError, to_iob2
from finetune.data import Sentence

PARQUET_REVISION = "refs/convert/parquet"
DOWNLOAD_TIMEOUT_S = 30  # per request (connect, and each read), unless HF_HUB_DOWNLOAD_TIMEOUT says
# Names that moved on the hub: the canonical `conll2003` now lives under its maintainer's namespace.
HF_ALIASES = {"conll2003": "eriktks/conll2003"}
# The label names of datasets whose names are known, for parquet files without feature metadata
# (CoNLL-2003: the ner_tags ClassLabel of the eriktks/conll2003 dataset card, in its order).
KNOWN_LABELS = {"eriktks/conll2003": list(LABELS)}
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_SHARD = re.compile(r"[^/]+/[^/]+/[^/]+\.parquet")  # CONFIG/SPLIT/NNNN.parquet


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`hf:NAME[:CONFIG]` as (hub repository id, config or None), aliases resolved."""
    _, _, rest = spec.partition(":")
    name, _, config = rest.partition(":")
    if not _REPO_ID.fullmatch(name) or (config and not re.fullmatch(r"[\w.-]+", config)):
        raise ConllError(f"{spec}: expected hf:NAME or hf:NAME:CONFIG (e.g. hf:conll2003)")
    return HF_ALIASES.get(name, name), config or None


def timeout_s() -> float:
    """The per-request timeout: HF_HUB_DOWNLOAD_TIMEOUT when set to a positive number, else 30 s."""
    try:
        value = float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT", ""))
    except ValueError:
        return DOWNLOAD_TIMEOUT_S
    return value if value > 0 else DOWNLOAD_TIMEOUT_S


def load_split(spec: str, split: str, download: bool = False) -> list[Sentence]:
    """The sentences of one split (`train`, `validation`, ...) of `hf:NAME[:CONFIG]`."""
    repo, config = parse_spec(spec)
    try:
        import pyarrow.parquet  # noqa: F401 - optional dependency, checked before any download
    except ImportError:
        raise ConllError(
            f"{spec}: reading Hugging Face datasets needs `pip install pyarrow`"
        ) from None
    files = (_fetch if download else _cached)(spec, repo, config, split)
    return read_parquet_split(spec, files, KNOWN_LABELS.get(repo))


def _pick(spec: str, repo: str, config: str | None, split: str, files: list[str]) -> list[str]:
    """The shards of `config`/`split` among the export's file names (one config is chosen when
    none is named: the only one, or `default`)."""
    shards = sorted(f for f in files if _SHARD.fullmatch(f))
    configs = sorted({f.split("/")[0] for f in shards})
    if not configs:
        raise ConllError(f"{spec}: {repo} has no parquet files on its {PARQUET_REVISION} branch")
    if config is None:
        if len(configs) == 1 or "default" in configs:
            config = configs[0] if len(configs) == 1 else "default"
        else:
            raise ConllError(
                f"{spec}: {repo} has the configs {', '.join(configs)}; name one as hf:NAME:CONFIG"
            )
    elif config not in configs:
        raise ConllError(f"{spec}: {repo} has no config {config!r} (has: {', '.join(configs)})")
    splits = sorted({f.split("/")[1] for f in shards if f.startswith(config + "/")})
    if split not in splits:
        raise ConllError(
            f"{spec}: {repo} ({config}) has no {split!r} split (has: {', '.join(splits)})"
        )
    return [f for f in shards if f.startswith(f"{config}/{split}/")]


def _cached(spec: str, repo: str, config: str | None, split: str) -> list[Path]:
    """The split's shards from the local hub cache; no request is made."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(
            snapshot_download(
                repo, repo_type="dataset", revision=PARQUET_REVISION, local_files_only=True
            )
        )
    except Exception:  # huggingface_hub raises several kinds; all mean "not cached"
        raise ConllError(
            f"{spec}: {repo} is not in the local Hugging Face cache (--download fetches it)"
        ) from None
    names = [p.relative_to(folder).as_posix() for p in folder.glob("*/*/*.parquet")]
    try:
        return [folder / f for f in _pick(spec, repo, config, split, names)]
    except ConllError as exc:
        raise ConllError(f"{exc} in the local cache (--download fetches it)") from None


def _fetch(spec: str, repo: str, config: str | None, split: str) -> list[Path]:
    from huggingface_hub import HfApi, constants, hf_hub_download

    seconds = timeout_s()
    host = constants.ENDPOINT
    try:
        with bounded_hub_requests(seconds), _bars(sys.stderr.isatty()):
            info = HfApi(endpoint=host).dataset_info(
                repo, revision=PARQUET_REVISION, timeout=seconds
            )
            names = [s.rfilename for s in info.siblings or []]
            wanted = _pick(spec, repo, config, split, names)
            return [
                Path(
                    hf_hub_download(
                        repo,
                        f,
                        repo_type="dataset",
                        revision=PARQUET_REVISION,
                        endpoint=host,
                        etag_timeout=seconds,
                    )
                )
                for f in wanted
            ]
    except ConllError:
        raise
    except _NoAnswer as exc:
        raise ConllError(f"{spec}: cannot download {repo} from {host}: {exc}") from None
    except Exception as exc:  # huggingface_hub and httpx raise many kinds; all mean "not available"
        raise ConllError(
            f"{spec}: cannot download {repo} from {host}: {_describe(exc, seconds)}"
        ) from None


def timed_out(exc: BaseException | None) -> bool:
    """A timeout, itself or raised from one (huggingface_hub wraps httpx's)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if "Timeout" in type(exc).__name__:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _describe(exc: BaseException, seconds: float) -> str:
    name = type(exc).__name__
    if timed_out(exc):
        return f"no answer within {seconds:g} s"
    if "RepositoryNotFound" in name or "RevisionNotFound" in name:
        return f"no such dataset, or no parquet export of it ({PARQUET_REVISION})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else name


class _NoAnswer(RuntimeError):
    """A request that timed out or found nobody listening, about to be retried."""


@contextmanager
def bounded_hub_requests(seconds: float):
    """Give every hub request a timeout (some huggingface_hub calls pass none) and refuse to
    retry one that got no answer (its retries would wait minutes), on the shared session."""
    from huggingface_hub.utils import get_session

    session = get_session()
    if not hasattr(session, "event_hooks"):  # huggingface_hub < 1 (requests): timeouts as given
        yield
        return
    unanswered: set[tuple[str, str]] = set()

    def on_request(request) -> None:
        key = (request.method, str(request.url))
        if key in unanswered:
            raise _NoAnswer(f"no answer within {seconds:g} s from {request.url.host}")
        unanswered.add(key)
        given = dict(request.extensions.get("timeout") or {})
        bounded = {k: given.get(k) or seconds for k in ("connect", "read", "write", "pool")}
        request.extensions = {**request.extensions, "timeout": bounded}

    def on_response(response) -> None:
        unanswered.discard((response.request.method, str(response.request.url)))

    saved = session.event_hooks
    session.event_hooks = {
        "request": [*saved["request"], on_request],
        "response": [*saved["response"], on_response],
    }
    try:
        yield
    finally:
        session.event_hooks = saved


@contextmanager
def _bars(wanted: bool):
    """huggingface_hub's download bars only on a terminal (and not when turned off already)."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    turn_off = not wanted and not are_progress_bars_disabled()
    if turn_off:
        disable_progress_bars()
    try:
        yield
    finally:
        if turn_off:
            enable_progress_bars()


def class_names(features: object) -> list[str] | None:
    """The ClassLabel names of a `ner_tags` feature as `datasets` stores it in parquet metadata:
    a Sequence/List of ClassLabel (`{"feature": {...}}`), or the older one-element-list form."""
    inner = features
    if isinstance(inner, list) and len(inner) == 1:
        inner = inner[0]
    if isinstance(inner, dict) and isinstance(inner.get("feature"), dict):
        inner = inner["feature"]
    if isinstance(inner, dict) and inner.get("_type") == "ClassLabel":
        names = inner.get("names")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    return None


def read_parquet_split(
    spec: str, files: list[Path], known: list[str] | None = None
) -> list[Sentence]:
    """Sentences from parquet shards with `tokens` (strings) and `ner_tags` (class ids named by
    the files' feature metadata or `known`, or tag strings); tags returned as IOB2."""
    import pyarrow.parquet as pq

    out: list[Sentence] = []
    for path in files:
        try:
            schema = pq.read_schema(path)
            missing = [c for c in ("tokens", "ner_tags") if c not in schema.names]
            if missing:
                raise ConllError(
                    f"{spec}: needs 'tokens' and 'ner_tags' columns, has {', '.join(schema.names)}"
                )
            table = pq.read_table(path, columns=["tokens", "ner_tags"])
        except ConllError:
            raise
        except Exception as exc:  # pyarrow's errors for a damaged or foreign file
            raise ConllError(f"{spec}: cannot read {path.name}: {_describe(exc, 0)}") from None
        names = _names_from_metadata(schema.metadata) or known
        tokens = table.column("tokens").to_pylist()
        tags = table.column("ner_tags").to_pylist()
        for row, (words, ids) in enumerate(zip(tokens, tags, strict=True)):
            if not words:
                continue  # CoNLL-2003 has empty rows where documents start
            labels = _labels(spec, path.name, row, ids, names)
            if len(labels) != len(words) or not all(isinstance(w, str) for w in words):
                raise ConllError(
                    f"{spec}: {path.name} row {row}: {len(words)} tokens but {len(labels)} tags"
                )
            out.append(Sentence(tuple(words), tuple(to_iob2(labels)[0])))
    if not out:
        raise ConllError(f"{spec}: no sentences in {', '.join(p.name for p in files)}")
    return out


def _names_from_metadata(metadata: dict | None) -> list[str] | None:
    raw = (metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw)["info"]["features"]["ner_tags"]
    except (ValueError, KeyError, TypeError):
        return None
    return class_names(features)


def _labels(spec: str, name: str, row: int, ids: list, names: list[str] | None) -> list[str]:
    if ids is None:
        return []
    if all(isinstance(t, str) for t in ids):
        labels = list(ids)
    elif names is None:
        raise ConllError(
            f"{spec}: ner_tags are class numbers but the data names no classes (no ClassLabel "
            "names in its metadata)"
        )
    else:
        try:
            labels = [names[t] for t in ids]
        except (IndexError, TypeError):
            raise ConllError(
                f"{spec}: {name} row {row}: a ner_tags value outside the {len(names)} classes"
            ) from None
    bad = next((t for t in labels if not _TAG.match(t)), None)
    if bad is not None:
        raise ConllError(
            f"{spec}: the tag {bad[:40]!r} is not O, B-TYPE or I-TYPE (an NER dataset in IOB tags "
            "is needed)"
        )
    return labels
