"""`--train-file hf:NAME[:CONFIG]`: a dataset from the hub's parquet export (refs/convert/parquet,
CONFIG/SPLIT/NNNN.parquet, ClassLabel names in the files' `huggingface` metadata), served here by a
fake hub on 127.0.0.1 (HF_ENDPOINT) in the layout of eriktks/conll2003. Nothing is fetched without
--download; with it, an unreachable or silent hub is one line and exit 2, never a hang."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from finetune.conll import ConllError  # noqa: E402
from finetune.data import generate_corpus  # noqa: E402
from finetune.hub_data import class_names, load_split, read_parquet_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHA = "fedcba9876543210fedcba9876543210fedcba98"
REPO = "eriktks/conll2003"
# the ner_tags ClassLabel of eriktks/conll2003, in its order
CONLL_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def _features(names: list[str] | None, kind: str = "List") -> bytes | None:
    """The `huggingface` schema metadata `datasets` writes into parquet files."""
    if names is None:
        return None
    seq = {"feature": {"dtype": "string", "_type": "Value"}, "_type": kind}
    feats = {
        "id": {"dtype": "string", "_type": "Value"},
        "tokens": seq,
        "pos_tags": {"feature": {"names": ["NN", "VB"], "_type": "ClassLabel"}, "_type": kind},
        "ner_tags": {"feature": {"names": names, "_type": "ClassLabel"}, "_type": kind},
    }
    return json.dumps({"info": {"features": feats}}).encode()


def _parquet(sentences, names=CONLL_NAMES, kind="List", columns=("tokens", "ner_tags")) -> bytes:
    """One shard: CoNLL-2003's columns, ner_tags as class ids in `names` order (an empty row first,
    as CoNLL-2003 has where a document starts)."""
    index = {n: i for i, n in enumerate(names or CONLL_NAMES)}
    tokens = [[]] + [list(s.words) for s in sentences]
    tags = [[]] + [[index[t] for t in s.tags] for s in sentences]
    data = {"id": [str(i) for i in range(len(tokens))]}
    if "tokens" in columns:
        data["tokens"] = tokens
    data["pos_tags"] = [[0] * len(t) for t in tokens]
    if "ner_tags" in columns:
        data["ner_tags"] = tags
    table = pa.table(data)
    meta = _features(names, kind)
    if meta:
        table = table.replace_schema_metadata({b"huggingface": meta})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _conll_repo(**kw) -> dict[str, bytes]:
    train, dev = generate_corpus(160, 40, seed=3)
    return {
        ".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n",
        "conll2003/train/0000.parquet": _parquet(train[:100], **kw),
        "conll2003/train/0001.parquet": _parquet(train[100:], **kw),
        "conll2003/validation/0000.parquet": _parquet(dev, **kw),
        "conll2003/test/0000.parquet": _parquet(dev[:10], **kw),
    }


class FakeHub:
    """Dataset repositories' refs/convert/parquet branch, as the hub's API and resolve URLs
    serve them; `stall_files` makes file requests go unanswered (a hub that stops answering)."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[str] = []
        self.stall_files = False
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._answer(self, True)

            def do_HEAD(self):
                hub._answer(self, False)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, h, body_too: bool):
        path = unquote(h.path.split("?")[0])
        self.requests.append(f"{h.command} {path}")
        for repo, files in self.repos.items():
            if path == f"/api/datasets/{repo}/revision/refs/convert/parquet":
                doc = {"id": repo, "sha": SHA, "private": False, "disabled": False,
                       "siblings": [{"rfilename": f} for f in sorted(files)]}  # fmt: skip
                return self._send(h, 200, json.dumps(doc).encode(), {}, body_too)
            for rev in ("refs/convert/parquet", SHA):
                prefix = f"/datasets/{repo}/resolve/{rev}/"
                if path.startswith(prefix) and path[len(prefix) :] in files:
                    if self.stall_files:
                        time.sleep(30)
                        return None
                    body = files[path[len(prefix) :]]
                    headers = {"X-Repo-Commit": SHA,
                               "ETag": '"' + hashlib.sha256(body).hexdigest() + '"'}  # fmt: skip
                    return self._send(h, 200, body, headers, body_too)
        self._send(h, 404, b"{}", {"X-Error-Code": "RepoNotFound"}, body_too)

    @staticmethod
    def _send(h, code, body, headers, body_too):
        h.send_response(code)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body_too:
            h.wfile.write(body)


@pytest.fixture
def hub():
    server = FakeHub({REPO: _conll_repo(), "someone/plain": _conll_repo(names=None)})
    yield server
    server.close()


@pytest.fixture
def local_hub(hub, tmp_path, monkeypatch):
    """This process's huggingface_hub pointed at the fake hub and an empty cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # (read at import: HF_ENDPOINT is late)
    template = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")
    return hub


def _unused_port() -> int:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- in this process: the reader, the cache, the timeouts ---


def test_class_names_in_both_forms_datasets_writes():
    names = ["O", "B-X", "I-X"]
    assert class_names(json.loads(_features(names))["info"]["features"]["ner_tags"]) == names
    old = {"feature": {"num_classes": 3, "names": names, "_type": "ClassLabel"}, "length": -1,
           "id": None, "_type": "Sequence"}  # fmt: skip
    assert class_names(old) == names
    assert class_names([{"names": names, "_type": "ClassLabel"}]) == names
    assert class_names({"feature": {"dtype": "int64", "_type": "Value"}}) is None


def test_tags_come_from_the_files_classlabel_names_not_the_position(tmp_path):
    train, _ = generate_corpus(30, 1, seed=1)
    shuffled = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG"]
    path = tmp_path / "0000.parquet"
    path.write_bytes(_parquet(train, names=shuffled))
    got = read_parquet_split("hf:x", [path])
    assert [s.words for s in got] == [s.words for s in train]  # the empty row is skipped
    assert [s.tags for s in got] == [s.tags for s in train]


def test_known_names_when_the_files_have_none_else_one_clear_error(tmp_path):
    train, _ = generate_corpus(10, 1, seed=2)
    path = tmp_path / "0000.parquet"
    path.write_bytes(_parquet(train, names=None))  # ids in CoNLL order, no metadata
    assert [s.tags for s in read_parquet_split("hf:x", [path], CONLL_NAMES)] == [
        s.tags for s in train
    ]
    with pytest.raises(ConllError, match="class numbers but the data names no classes"):
        read_parquet_split("hf:x", [path])


def test_download_then_offline_from_the_cache(local_hub):
    dev = load_split("hf:conll2003", "validation", download=True)
    assert len(dev) == 40 and dev == generate_corpus(160, 40, seed=3)[1]
    train = load_split("hf:conll2003", "train", download=True)  # both shards, in order
    assert train == generate_corpus(160, 40, seed=3)[0]
    seen = len(local_hub.requests)
    assert load_split("hf:conll2003:conll2003", "train") == train  # no --download: the cache
    assert len(local_hub.requests) == seen


def test_without_download_nothing_is_requested(local_hub):
    with pytest.raises(ConllError, match=r"not in the local Hugging Face cache \(--download"):
        load_split("hf:conll2003", "train")
    assert local_hub.requests == []


def test_unknown_config_split_and_columns_are_one_line(local_hub):
    local_hub.repos["someone/nocols"] = {
        "default/train/0000.parquet": _parquet(generate_corpus(5, 1)[0], columns=("tokens",))
    }
    cases = [
        ("hf:conll2003:english", "train", "has no config 'english' (has: conll2003)"),
        ("hf:conll2003", "dev", "has no 'dev' split (has: test, train, validation)"),
        ("hf:someone/nocols", "train", "needs 'tokens' and 'ner_tags' columns, has id, tokens"),
        ("hf:someone/missing", "train", "cannot download someone/missing"),
        ("hf:../x", "train", "expected hf:NAME or hf:NAME:CONFIG"),
    ]
    for spec, split, message in cases:
        with pytest.raises(ConllError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            load_split(spec, split, download=True)
        assert "\n" not in str(e.value)


def test_a_hub_that_stops_answering_is_not_retried_for_minutes(local_hub):
    local_hub.stall_files = True  # the listing answers, the files never do
    t0 = time.monotonic()
    with pytest.raises(ConllError, match="no answer within 1 s"):
        load_split("hf:conll2003", "train", download=True)
    # huggingface_hub alone retries a timed-out file with a 60 s timeout and backoff
    assert time.monotonic() - t0 < 10


def test_hub_session_is_left_as_found(local_hub):
    from huggingface_hub.utils import get_session

    before = {k: list(v) for k, v in get_session().event_hooks.items()}
    load_split("hf:conll2003", "test", download=True)
    assert {k: list(v) for k, v in get_session().event_hooks.items()} == before


class _Terminal(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_a_progress_bar_on_a_terminal_only(local_hub, monkeypatch, tty):
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    enable_progress_bars()  # as --download without --no-progress leaves them
    err = _Terminal(tty)
    monkeypatch.setattr(sys, "stderr", err)
    load_split("hf:conll2003", "validation", download=True)
    assert ("0000.parquet" in err.getvalue()) == tty, err.getvalue()
    assert not are_progress_bars_disabled()  # left as found


def test_an_older_hub_session_without_hooks_is_used_as_it_is(monkeypatch):
    import huggingface_hub.utils

    from finetune.hub_data import bounded_hub_requests

    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: object())  # requests-based
    with bounded_hub_requests(1):
        pass


# --- python -m finetune in a child, as a user runs it ---


def _run(tmp_path, endpoint, *argv, env_extra=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    env.update(env_extra or {})
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "finetune", "--no-progress", "--quiet", "--device", "cpu", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=tmp_path,
    )
    return r, time.monotonic() - t0


@pytest.mark.slow
def test_cli_fetches_with_download_then_reads_the_cache_and_never_without(hub, tmp_path):
    # without --download and nothing cached: one line, exit 2, no request at all
    r, _ = _run(tmp_path, hub.url, "--train-file", "hf:conll2003", "--max-steps", "1")
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("finetune: ") and line.endswith(
        "hf:conll2003: eriktks/conll2003 is not in the local Hugging Face cache "
        "(--download fetches it)"
    ), r.stderr
    assert hub.requests == []
    # with it: fetched from the fake hub and trained on; labels from the ClassLabel names
    out = tmp_path / "r.json"
    argv = ("--train-file", "hf:conll2003", "--max-steps", "2", "--json", str(out))
    r, _ = _run(tmp_path, hub.url, *argv, "--download")
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(out.read_text())
    assert doc["data"]["source"] == "hf-datasets" and doc["train"]["steps"] == 2
    kinds = sorted({t[2:] for s in generate_corpus(160, 40, seed=3)[0] for t in s.tags if t != "O"})
    assert doc["data"]["labels"] == ["O"] + [f"{p}-{k}" for k in kinds for p in "BI"]
    assert (doc["data"]["train_sentences"], doc["data"]["eval_sentences"]) == (160, 40)
    assert any(q.startswith("GET /datasets/eriktks/conll2003/resolve/") for q in hub.requests)
    # again without --download: the cache, offline (as `gpucheck bench` runs it), the same run
    hub.requests.clear()
    out.unlink()
    r, _ = _run(tmp_path, hub.url, *argv, env_extra={"HF_HUB_OFFLINE": "1"})
    assert r.returncode in (0, 1), r.stderr
    assert json.loads(out.read_text())["train"]["steps"] == 2
    assert hub.requests == []


@pytest.mark.slow
def test_cli_unreachable_and_silent_hubs_are_one_line_within_the_timeout(tmp_path):
    r, _ = _run(tmp_path, f"http://127.0.0.1:{_unused_port()}", "--train-file", "hf:conll2003",
                "--download")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "hf:conll2003: cannot download eriktks/conll2003 from http://127.0.0.1:" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        r, wall = _run(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}", "--train-file",
                       "hf:conll2003", "--download", env_extra={"HF_HUB_DOWNLOAD_TIMEOUT": "2"})  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "no answer within 2 s" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert wall < 60, wall  # the child's start (torch) plus one 2 s timeout, not a hang
