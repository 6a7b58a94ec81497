"""Training runs on the CPU: a two-step run, a full tiny run through its gate, reload of the
saved model, a real checkpoint folder trained on CoNLL files, the JSON contract, bad input."""

from __future__ import annotations

import json
import math

import pytest

from finetune import cli
from finetune import train as tr

ARGS = ["--no-progress", "--quiet", "--device", "cpu"]


def _run(tmp_path, *argv):
    out = tmp_path / "result.json"
    rc = cli.main([*ARGS, "--json", str(out), *argv])
    doc = json.loads(out.read_text()) if out.exists() else None
    return rc, doc


def _check_contract(doc):
    assert doc["schema_version"] == 1
    for key in ("status", "device", "dtype", "model", "config", "data", "train", "eval", "gate"):
        assert key in doc, key
    t, e, g = doc["train"], doc["eval"], doc["gate"]
    for key in (
        "samples_per_s",
        "real_tokens_per_s",
        "padded_tokens_per_s",
        "step_time_p50_s",
        "step_time_p95_s",
        "peak_memory_bytes",
        "model_flops_per_token",
        "time_to_gate_s",
        "loss_curve",
        "wall_s",
    ):
        assert key in t, key
    assert "mfu" in t and t["mfu"] is None  # CPU
    assert t["peak_memory_bytes"] > 0
    for key in ("f1", "precision", "recall", "per_type", "strict_iob2", "history"):
        assert key in e, key
    assert isinstance(g["passed"], bool) and "f1_threshold" in g
    assert doc["device"] == "cpu" and doc["dtype"] == "fp32"
    for key in ("preset", "batch_size", "max_length", "epochs", "lr", "seed"):
        assert key in doc["config"]
    assert set(doc["data"]["truncated_words"]) == {"train", "eval"}
    assert doc["model"]["attn_implementation"] == "sdpa"
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN or inf


def test_two_step_run(tmp_path):
    rc, doc = _run(tmp_path, "--max-steps", "2")
    assert rc == 1  # two steps cannot pass the F1 gate
    _check_contract(doc)
    assert doc["status"] == "gate-failed"
    assert doc["train"]["steps"] == 2
    assert doc["train"]["samples"] == 2 * doc["config"]["batch_size"]
    assert len(doc["train"]["loss_curve"]) == 2
    # length-grouped batches by default (gpucheck bench's child runs with this default too)
    assert doc["config"]["length_bucketing_window"] == 3
    assert all(math.isfinite(v) for _, v in doc["train"]["loss_curve"])


def test_seeded_runs_are_reproducible_on_cpu():
    curves = []
    for _ in range(2):
        prep = tr.prepare(
            tr.Options(
                preset="tiny",
                device="cpu",
                max_steps=6,
                log_every=1,
                progress=False,
                eval_each_epoch=False,
            )
        )
        curves.append(tr.train_and_evaluate(prep)["train"]["loss_curve"])
    assert curves[0] == curves[1]


@pytest.mark.slow
def test_full_tiny_run_passes_the_gate_and_reloads(tmp_path):
    out_dir = tmp_path / "model"
    rc, doc = _run(tmp_path, "--output-dir", str(out_dir))
    assert rc == 0, doc["gate"]
    _check_contract(doc)
    assert doc["status"] == "ok" and doc["gate"]["passed"]
    assert doc["eval"]["f1"] >= doc["gate"]["f1_threshold"]
    assert doc["gate"]["loss_fell"] and doc["train"]["time_to_gate_s"] is not None
    assert set(doc["eval"]["per_type"]) == {"PER", "ORG", "LOC", "MISC"}
    assert doc["train"]["step_time_p50_s"] <= doc["train"]["step_time_p95_s"]

    # the saved model and tokenizer reload with plain transformers and predict the same
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(out_dir)
    tok = AutoTokenizer.from_pretrained(out_dir)
    assert model.config.id2label[1] == "B-PER"
    enc = tok(
        ["Mr.", "Zorbak", "Quell", "visited", "Plimvania", "."],
        is_split_into_words=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape[-1] == 9

    # and `--model DIR` fine-tunes it further (evaluates at least as well after two steps)
    rc2, doc2 = _run(tmp_path, "--model", str(out_dir), "--max-steps", "2", "--lr", "1e-5")
    assert doc2["model"]["source"] == str(out_dir)
    assert doc2["eval"]["f1"] >= doc["gate"]["f1_threshold"] - 0.05
    assert rc2 in (0, 1)


def _checkpoint(tmp_path):
    """A real checkpoint folder: a small random BertForTokenClassification and its tokenizer."""
    from transformers import BertConfig, BertForTokenClassification

    from finetune.data import generate_corpus
    from finetune.tokenizer import train_wordpiece

    sents, _ = generate_corpus(300, 1, seed=11)
    tok = train_wordpiece(sents, 400, 64)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
        id2label={0: "O", 1: "B-X", 2: "I-X"},
        label2id={"O": 0, "B-X": 1, "I-X": 2},
    )
    path = tmp_path / "ckpt"
    BertForTokenClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _conll(tmp_path, name, sentences):
    lines = ["-DOCSTART-\t-X-\t-X-\tO", ""]
    for s in sentences:
        prev = "O"
        for w, t in zip(s.words, s.tags, strict=True):
            # write IOB1 (as the original CoNLL-2003 files): I- unless it follows the same type
            t1 = t if t == "O" or (t.startswith("B-") and prev[2:] == t[2:]) else "I-" + t[2:]
            lines.append(f"{w}\tNNP\tI-NP\t{t1}")
            prev = t
        lines.append("  ")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_real_checkpoint_on_conll_files(tmp_path):
    from finetune.data import generate_corpus

    ckpt = _checkpoint(tmp_path)
    train, dev = generate_corpus(64, 24, seed=3)
    tf, ef = _conll(tmp_path, "train.txt", train), _conll(tmp_path, "dev.txt", dev)
    rc, doc = _run(
        tmp_path,
        "--model",
        str(ckpt),
        "--train-file",
        str(tf),
        "--eval-file",
        str(ef),
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--max-length",
        "32",
    )
    assert rc in (0, 1)
    _check_contract(doc)
    assert doc["model"]["source"] == str(ckpt)
    assert doc["model"]["num_labels"] == 9  # the head was resized to the file's labels
    assert doc["data"]["source"] == "conll"
    assert doc["data"]["iob1_converted"] > 0
    assert doc["data"]["train_sentences"] == 64
    assert doc["train"]["steps"] == 3
    # max length 32 cuts long sentences: the lost words are counted
    assert doc["data"]["truncated_words"]["train"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--train-file", "/nonexistent/train.txt", "--eval-file", "/nonexistent/dev.txt"],
            "no such file",
        ),
        (["--train-file", "x.txt"], "--train-file and --eval-file together"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--device", "tpu"], "expected cpu, cuda or cuda:N"),
        (["--batch-size", "0"], "must be at least 1"),
        (["--lr", "nan"], "positive number"),
        (["--preset", "huge"], "invalid choice"),
        (["--model", "/nonexistent/model"], "no such folder"),
        (["--max-length", "2"], "at least 4"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    rc = cli.main([*ARGS, *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_parser_errors_exit_2(capsys):
    assert cli.main(["--epochs", "many"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_malformed_conll_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("John B-PER\nlives\n")
    rc = cli.main([*ARGS, "--train-file", str(bad), "--eval-file", str(bad)])
    assert rc == 2
    assert f"{bad}:2:" in capsys.readouterr().err


def test_model_folder_without_config(tmp_path, capsys):
    rc = cli.main([*ARGS, "--model", str(tmp_path)])
    assert rc == 2 and "no config.json" in capsys.readouterr().err


def test_json_into_missing_folder(tmp_path, capsys):
    rc = cli.main([*ARGS, "--json", str(tmp_path / "no" / "x.json")])
    assert rc == 2 and "no such folder" in capsys.readouterr().err


def test_help_is_quick_and_lists_flags(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "--preset",
        "--model",
        "--train-file",
        "--eval-file",
        "--epochs",
        "--max-steps",
        "--batch-size",
        "--max-length",
        "--lr",
        "--seed",
        "--device",
        "--dtype",
        "--compile",
        "--output-dir",
        "--json",
    ):
        assert flag in out
