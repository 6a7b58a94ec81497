"""Training batches: which sentences go together, and padding them into tensors.

Dynamic padding pads each batch to its longest sentence. Length grouping (as the Hugging Face
Trainer's `group_by_length`) puts sentences of similar length together so that less of each
batch is padding, while the batch order stays random.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Iterator, Sequence

import torch

from finetune.align import IGNORE, Encoded

# The default window is 3 batches (`--bucket-batches 3`), not the Trainer's up to 50: sorting
# by length also sorts by content wherever length follows content. On the built-in corpus a
# sentence's token length follows its number of entities (each generated name is several
# sub-word pieces; correlation 0.84, on WNUT-2017 0.25), so length-sorted batches are all
# entity-dense or all entity-light, and a from-scratch model learns less per step: the Trainer's
# window (31 batches) cost 0.032 mean dev F1 there over 8 seeds, 3 batches 0.016 over 10,
# while still cutting WNUT-2017's padding from 43% to 23% (docs/benchmarks.md).
DEFAULT_WINDOW = 3


def group_window(n_sentences: int, batch_size: int) -> int:
    """The default grouping window, in batches: the Trainer's `group_by_length` mega-batch
    (`min(n // (4 * batch), 50)` batches, at least 1)."""
    return max(1, min(n_sentences // (4 * batch_size), 50))


def length_buckets(
    lengths: Sequence[int], batch_size: int, rng: random.Random, bucket_batches: int
) -> list[list[int]]:
    """Shuffled batches of similar-length sequences: shuffle, sort within windows of
    `bucket_batches` batches, cut into batches, shuffle the batch order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket_batches
    batches: list[list[int]] = []
    for lo in range(0, len(order), window):
        chunk = sorted(order[lo : lo + window], key=lengths.__getitem__)
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


class Batcher:
    """Pads batches of pre-tokenised sequences (dynamic padding) into CPU tensors."""

    def __init__(self, enc: Encoded, pad_id: int, multiple: int = 1, pin: bool = False) -> None:
        self.ids = [torch.tensor(x, dtype=torch.long) for x in enc.input_ids]
        self.labels = [torch.tensor(x, dtype=torch.long) for x in enc.labels]
        self.lengths = enc.lengths
        self.pad_id = pad_id
        self.multiple = multiple
        self.pin = pin

    def collate(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        from torch.nn.utils.rnn import pad_sequence

        ids = pad_sequence([self.ids[i] for i in idx], batch_first=True, padding_value=self.pad_id)
        labels = pad_sequence([self.labels[i] for i in idx], batch_first=True, padding_value=IGNORE)
        width = ids.shape[1]
        if self.multiple > 1 and width % self.multiple:
            extra = self.multiple - width % self.multiple
            ids = torch.nn.functional.pad(ids, (0, extra), value=self.pad_id)
            labels = torch.nn.functional.pad(labels, (0, extra), value=IGNORE)
        lens = torch.tensor([self.lengths[i] for i in idx])
        mask = (torch.arange(ids.shape[1])[None, :] < lens[:, None]).long()
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.pin:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch


def prefetch(batcher: Batcher, batches: Sequence[Sequence[int]], background: bool) -> Iterator:
    """Collated batches, built by a background thread (CUDA: overlaps the GPU) or inline."""
    if not background:
        for idx in batches:
            yield idx, batcher.collate(idx)
        return
    q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def work() -> None:
        try:
            for idx in batches:
                if stop.is_set():
                    return
                q.put((idx, batcher.collate(idx)))
        except BaseException as exc:  # hand it to the consumer
            q.put(exc)
            return
        q.put(None)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
