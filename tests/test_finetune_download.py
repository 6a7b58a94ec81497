"""`--download`: nothing is fetched without it; with it, a checkpoint comes from the hub named by
HF_ENDPOINT (here a fake hub on 127.0.0.1 serving a tiny local checkpoint), and an unreachable
hub is one line and exit 2. Each case runs `python -m finetune` in a child with its own env."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = "tiny-org/tiny-bert"


def _serve(folder: Path):
    files = sorted(p.name for p in folder.iterdir() if p.is_file())

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _file(self, body_too: bool):
            path = self.path.split("?")[0]
            api = f"/api/models/{REPO}/revision/"
            if path.startswith(api):
                body = json.dumps(
                    {"id": REPO, "sha": SHA, "siblings": [{"rfilename": f} for f in files]}
                ).encode()
                self._send(200, body, {"Content-Type": "application/json"}, body_too)
                return
            if path.startswith(f"/api/models/{REPO}/tree/"):  # the file listing
                body = json.dumps(
                    [
                        {
                            "type": "file",
                            "path": f,
                            "size": (folder / f).stat().st_size,
                            "oid": hashlib.sha1((folder / f).read_bytes()).hexdigest(),
                        }
                        for f in files
                    ]
                ).encode()
                self._send(200, body, {"Content-Type": "application/json"}, body_too)
                return
            prefix = f"/{REPO}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix) :].split("/", 1)[1]
                if name in files:
                    body = (folder / name).read_bytes()
                    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
                    self._send(200, body, {"X-Repo-Commit": SHA, "ETag": etag}, body_too)
                    return
            self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, body_too)

        def _send(self, code, body, headers, body_too):
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body_too:
                self.wfile.write(body)

        def do_GET(self):
            self._file(True)

        def do_HEAD(self):
            self._file(False)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _run(tmp_path, endpoint, *argv, **env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "finetune", "--no-progress", "--quiet", "--device", "cpu", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_download_from_a_fake_hub_and_nothing_without_the_flag(tmp_path):
    from transformers import BertConfig, BertForTokenClassification

    from finetune.data import generate_corpus
    from finetune.tokenizer import train_wordpiece

    folder = tmp_path / "served"
    sents, _ = generate_corpus(200, 1, seed=5)
    tok = train_wordpiece(sents, 300, 64)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForTokenClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    server = _serve(folder)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # without --download: not fetched, one line
        r = _run(tmp_path, endpoint, "--model", REPO, "--max-steps", "1")
        assert r.returncode == 2, r.stderr
        assert "not in the local Hugging Face cache" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not list((tmp_path / "hf").rglob("config.json"))
        # with it: fetched from the fake hub, trained, the training gate applied
        out = tmp_path / "r.json"
        r = _run(tmp_path, endpoint, "--model", REPO, "--download", "--max-steps", "2",
                 "--json", str(out))  # fmt: skip
        assert r.returncode in (0, 1), r.stderr
        doc = json.loads(out.read_text())
        assert doc["model"]["source"] == REPO and doc["train"]["steps"] == 2
        assert list((tmp_path / "hf").rglob("config.json"))
        assert "Traceback" not in r.stderr
    finally:
        server.shutdown()


@pytest.mark.slow
def test_download_offline_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _run(tmp_path, f"http://127.0.0.1:{port}", "--model", REPO, "--download")
    assert r.returncode == 2, r.stderr
    assert "cannot download it" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_a_hub_that_never_answers_is_one_line_within_the_timeout(tmp_path):
    import socket
    import time

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        t0 = time.monotonic()
        r = _run(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}", "--model", REPO,
                 "--download", HF_HUB_DOWNLOAD_TIMEOUT="2")  # fmt: skip
        wall = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert "cannot download it" in r.stderr and "no answer within 2 s" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert wall < 60, wall  # the child's start (torch) plus one 2 s timeout, not a hang
