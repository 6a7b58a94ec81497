"""`python -m finetune` refuses what it cannot fine-tune before training starts (one line, exit
2), applies the gate that fits the data, stays quiet by default, and scales fp16 gradients on
every supported torch. Checkpoints are tiny ones built here from transformers configs."""

from __future__ import annotations

import json

import pytest
import torch

from finetune import amp, cli
from finetune import train as tr
from finetune.gate import Gate, LossSummary, choose_rule

ARGS = ["--no-progress", "--quiet", "--device", "cpu"]


def _tokenizer(n_sentences=200, vocab=300):
    from finetune.data import generate_corpus
    from finetune.tokenizer import train_wordpiece

    sents, _ = generate_corpus(n_sentences, 1, seed=11)
    return train_wordpiece(sents, vocab, 64)


def _bert(path, vocab_size=None, tokenizer=True, num_labels=3):
    from transformers import BertConfig, BertForTokenClassification

    tok = _tokenizer()
    cfg = BertConfig(
        vocab_size=vocab_size or len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    BertForTokenClassification(cfg).save_pretrained(path)
    if tokenizer:
        tok.save_pretrained(path)
    return path


def _conll(path, sentences):
    lines = []
    for words, tags in sentences:
        lines += [f"{w} {t}" for w, t in zip(words, tags, strict=True)] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


def _fail(capsys, argv, message):
    capsys.readouterr()  # drop what building the test checkpoint printed
    rc = cli.main([*ARGS, *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_gpt2_checkpoint_is_refused(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(
        tmp_path / "gpt2"
    )
    _fail(capsys, ["--model", str(tmp_path / "gpt2")], "a 'gpt2' checkpoint")


def test_distilbert_checkpoint_is_refused(tmp_path, capsys):
    from transformers import DistilBertConfig, DistilBertForTokenClassification

    cfg = DistilBertConfig(n_layers=1, dim=32, n_heads=2, hidden_dim=64, vocab_size=100)
    DistilBertForTokenClassification(cfg).save_pretrained(tmp_path / "db")
    _fail(capsys, ["--model", str(tmp_path / "db")], "a 'distilbert' checkpoint")


def test_folder_without_tokenizer_is_refused(tmp_path, capsys):
    path = _bert(tmp_path / "m", tokenizer=False)
    _fail(capsys, ["--model", str(path)], "no tokenizer in that folder")


def test_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path, capsys):
    path = _bert(tmp_path / "m", vocab_size=50)
    _fail(capsys, ["--model", str(path)], "token embeddings")


@pytest.mark.parametrize("name", ["./no-such-model", "/no/such/model", "no-such-model-here"])
def test_missing_model_is_one_line(tmp_path, capsys, monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fail(capsys, ["--model", name], "no such folder")


def test_output_dir_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    _fail(capsys, ["--output-dir", str(f)], "is not a folder")


def test_eval_only_labels_are_named_and_user_data_gets_the_training_gate(tmp_path, capfd):
    model = _bert(tmp_path / "m")
    train = [(["Ann", "Lee", "ran", "."], ["B-PER", "I-PER", "O", "O"])] * 24
    dev = [(["Bob", "in", "Oslo", "."], ["B-PER", "O", "B-LOC", "O"])] * 4
    out = tmp_path / "r.json"
    argv = [*ARGS, "--model", str(model), "--json", str(out), "--max-steps", "3"]
    argv += ["--train-file", str(_conll(tmp_path / "t.txt", train))]
    argv += ["--eval-file", str(_conll(tmp_path / "d.txt", dev)), "--batch-size", "8"]
    rc = cli.main(argv)
    err = capfd.readouterr().err
    assert "labels only in the eval file, never trained: B-LOC" in err
    doc = json.loads(out.read_text())
    assert doc["data"]["eval_only_labels"] == ["B-LOC"]
    g = doc["gate"]
    assert g["kind"] == "training-works" and g["f1_threshold"] is None
    assert "user data" in g["why"]
    assert doc["config"]["f1_gate"] is None
    assert rc == (0 if g["loss_fell"] else 1)
    # quiet by default: none of transformers' load report or bars, our one line instead
    for noise in ("LOAD REPORT", "Loading weights", "UNEXPECTED", "MISSING"):
        assert noise not in err
    assert doc["model"]["load_note"].startswith("classifier head initialised for 5 labels")


def test_f1_gate_flag_asks_for_more(tmp_path):
    out = tmp_path / "r.json"
    rc = cli.main([*ARGS, "--json", str(out), "--max-steps", "2", "--f1-gate", "0.99"])
    g = json.loads(out.read_text())["gate"]
    assert rc == 1 and g["kind"] == "user-f1" and g["f1_threshold"] == 0.99


def test_gate_rules():
    assert choose_rule(None, True, False, "tiny", 0.8).f1_threshold == 0.8
    assert choose_rule(None, True, True, "tiny", 0.8).kind == "training-works"
    assert choose_rule(None, False, False, "tiny", 0.8).kind == "training-works"
    assert choose_rule(0.5, False, True, "tiny", 0.8).f1_threshold == 0.5
    fell = LossSummary.of([2.0, 1.5, 1.0, 0.5], False)
    flat = LossSummary.of([1.0, 1.0, 1.0, 1.0], False)
    nan = LossSummary.of([1.0, float("nan")], False)
    works = choose_rule(None, False, False, "tiny", 0.8)
    assert Gate.judge(fell, 0.01, works).passed
    assert not Gate.judge(flat, 0.9, works).passed
    assert not Gate.judge(nan, 0.9, works).passed
    assert not Gate.judge(fell, 0.5, choose_rule(0.6, False, False, "tiny", 0.8)).passed


# --- fp16 on every supported torch (issue: torch.amp.GradScaler exists only from 2.3) ---------


def test_grad_scaler_falls_back_before_torch_2_3(monkeypatch):
    monkeypatch.delattr(torch.amp, "GradScaler")
    scaler = amp.grad_scaler("cuda", enabled=False)
    assert isinstance(scaler, torch.cuda.amp.GradScaler) and not scaler.is_enabled()
    assert amp.has_grad_scaler("cuda") and not amp.has_grad_scaler("cpu")
    with pytest.raises(ValueError):
        amp.grad_scaler("cpu", enabled=True)
    with pytest.raises(tr.InputError, match="no fp16 gradient scaler"):
        tr.resolve_dtype("fp16", torch.device("cpu"))


def test_loop_runs_with_the_old_scaler_api(monkeypatch):
    import transformers.trainer  # noqa: F401 - imports accelerate, which needs the new API itself

    monkeypatch.delattr(torch.amp, "GradScaler")
    prep = tr.prepare(tr.Options(device="cpu", max_steps=2, progress=False, eval_each_epoch=False))
    doc = tr.train_and_evaluate(prep)
    assert doc["train"]["steps"] == 2 and doc["config"]["grad_scaler"] is False


# a step the grad scaler skips does not advance the schedule (torch warned of the order)
@pytest.mark.filterwarnings("error:Detected call of:UserWarning")
def test_fp16_path_on_cpu(tmp_path):
    out = tmp_path / "r.json"
    cli.main([*ARGS, "--json", str(out), "--max-steps", "2", "--dtype", "fp16"])
    doc = json.loads(out.read_text())
    assert doc["dtype"] == "fp16" and doc["config"]["grad_scaler"] is True
    assert doc["train"]["steps"] == 2 and doc["gate"]["loss_finite"]


def test_a_checkpoint_keeps_its_dropout_and_gets_a_fine_tuning_recipe(tmp_path):
    from transformers import BertConfig

    path = _bert(tmp_path / "m")
    cfg = BertConfig.from_pretrained(path)
    prep = tr.prepare(tr.Options(model=str(path), device="cpu", max_steps=1))
    model = tr.build_model(prep)
    # the preset's dropout 0.0 (made for the tiny model from scratch) is not applied to it
    assert model.config.hidden_dropout_prob == cfg.hidden_dropout_prob == 0.1
    # nor its learning rate, epochs and length: run_ner.py's lr and epochs, max length
    # min(128, the model's positions)
    assert (prep.preset.lr, prep.preset.epochs, prep.preset.max_length) == (5e-5, 3, 64)


@pytest.mark.parametrize("saved", [torch.float16, torch.bfloat16])
def test_a_half_precision_checkpoint_trains_fp32_weights(tmp_path, saved):
    from transformers import BertForTokenClassification

    path = _bert(tmp_path / "m")
    BertForTokenClassification.from_pretrained(path).to(saved).save_pretrained(path)
    prep = tr.prepare(tr.Options(model=str(path), device="cpu", max_steps=1))
    model = tr.build_model(prep)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_length_grouping_window_and_batches():
    import random

    from finetune.batching import group_window, length_buckets

    assert group_window(2000, 16) == 31 and group_window(100, 32) == 1
    assert group_window(10**6, 8) == 50  # the Trainer's cap
    lengths = [random.Random(i).randint(3, 60) for i in range(500)]
    batches = length_buckets(lengths, 16, random.Random(0), group_window(500, 16))
    assert sorted(i for b in batches for i in b) == list(range(500))

    def padding(bs):
        return 1 - sum(lengths) / sum(max(lengths[i] for i in b) * len(b) for b in bs)

    assert padding(batches) < padding(length_buckets(lengths, 16, random.Random(0), 1)) / 2
    prep = tr.prepare(tr.Options(device="cpu", bucket_batches=0, max_steps=1))
    assert tr.grouping_window(prep) == 31
    prep.opts.bucket_batches = 1
    assert tr.grouping_window(prep) == 1


def test_evaluation_calls_the_plain_model_not_the_compiled_one(monkeypatch):
    # under no_grad a compiled model compiles again (grad mode is a dynamo guard): on the H200 a
    # run spent one of its four 13-15 s compilations on evaluation
    grad_modes = []

    class Compiled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, **batch):
            grad_modes.append(torch.is_grad_enabled())
            return self.model(**batch)

    import torch.fx.experimental._config as fx_config

    monkeypatch.setattr(tr.torch, "compile", lambda model, **kw: Compiled(model))
    monkeypatch.setattr(fx_config, "use_duck_shape", True)  # restored after the test
    prep = tr.prepare(tr.Options(device="cpu", max_steps=3, compile=True))
    doc = tr.train_and_evaluate(prep)
    assert doc["model"]["compiled"] and doc["eval"]["sentences"] > 0
    assert grad_modes == [True, True, True]  # the three training steps, no evaluation batch
    # a square first batch must not tie batch size to length (one recompile each, on the H200)
    assert fx_config.use_duck_shape is False


def test_a_checkpoint_run_is_named_by_its_checkpoint_not_the_preset(tmp_path, capsys):
    path = _bert(tmp_path / "m")
    train = _conll(tmp_path / "t.conll", [(["Ann", "met", "Bob"], ["B-PER", "O", "B-PER"])] * 8)
    capsys.readouterr()
    argv = ["--no-progress", "--device", "cpu", "--model", str(path), "--max-steps", "2"]
    cli.main([*argv, "--train-file", str(train), "--eval-file", str(train)])
    head = capsys.readouterr().out.splitlines()[0]
    assert head.startswith(f"finetune {path} on cpu") and "tiny" not in head, head


def test_quiet_turns_off_the_download_bars_too(monkeypatch):
    from finetune import quiet

    seen = {}

    def configure(**kw):
        seen.update(kw)
        raise SystemExit(0)  # stop before any work

    monkeypatch.setattr(quiet, "configure", configure)
    with pytest.raises(SystemExit):
        cli.main(["--download", "--quiet", "--device", "cpu"])
    assert seen["hub_bars"] is False
