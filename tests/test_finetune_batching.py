"""Length-grouped batches (the default): every sentence once per epoch, less padding than
random batches on the built-in corpus, the same default in every entry point, and
`--bucket-batches 1` still random batches."""

from __future__ import annotations

import pytest

from finetune import cli, compare
from finetune import train as tr
from finetune.batching import DEFAULT_WINDOW


@pytest.fixture(scope="module")
def prep():
    return tr.prepare(tr.Options(device="cpu", max_steps=1, progress=False))


def _padding(lengths, batches):
    return 1 - sum(lengths) / sum(max(lengths[i] for i in b) * len(b) for b in batches)


def _epoch(prep, window, epoch=0):
    from finetune.batching import Batcher

    prep.opts.bucket_batches = window
    batcher = Batcher(prep.train_enc, prep.tokenizer.pad_token_id)
    return batcher, tr.train_batches(batcher, prep, epoch, 0, 10**9)


def test_default_is_grouped_everywhere():
    default = tr.Options().bucket_batches
    assert default == DEFAULT_WINDOW > 1
    assert default == cli.build_parser().parse_args([]).bucket_batches
    assert default == compare._parser().parse_args([]).bucket_batches
    assert cli.build_parser().parse_args(["--bucket-batches", "1"]).bucket_batches == 1


def test_default_window_groups_and_1_is_random(prep):
    prep.opts.bucket_batches = tr.Options().bucket_batches
    assert tr.grouping_window(prep) > 1
    prep.opts.bucket_batches = 1
    assert tr.grouping_window(prep) == 1


@pytest.mark.parametrize("window", [tr.Options().bucket_batches, 1, 4])
def test_an_epoch_holds_every_sentence_exactly_once(prep, window):
    for epoch in (0, 1):
        _, batches = _epoch(prep, window, epoch)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(prep.train_enc)))
        assert all(1 <= len(b) <= prep.preset.batch_size for b in batches)
    # the batch order changes from epoch to epoch
    assert _epoch(prep, window, 0)[1] != _epoch(prep, window, 1)[1]


def test_grouping_pads_far_less_than_random_batches_on_the_builtin_corpus(prep):
    lengths = prep.train_enc.lengths
    grouped = _padding(lengths, _epoch(prep, tr.Options().bucket_batches)[1])
    plain = _padding(lengths, _epoch(prep, 1)[1])
    # measured: 44-45% random, 24% with the default window of 3 batches
    assert plain > 0.35 and grouped < 0.6 * plain
