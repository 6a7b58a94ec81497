"""The tokenizer: a WordPiece vocabulary trained on the corpus, wrapped as a fast tokenizer."""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence

from finetune.data import Sentence

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(sentences: Sequence[Sentence], vocab_size: int, model_max_length: int = 512):
    """A cased BERT-style WordPiece tokenizer trained on `sentences` (a fast tokenizer); the
    same corpus and sizes give the same tokenizer object within a process."""
    texts = tuple(" ".join(s.words) for s in sentences)
    return _train_wordpiece(texts, vocab_size, model_max_length)


@functools.lru_cache(maxsize=4)
def _train_wordpiece(texts: tuple[str, ...], vocab_size: int, model_max_length: int):
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=[c for c in string.printable if not c.isspace()],
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Renumber the pieces canonically (special tokens first, then sorted). The trainer breaks
    # ties between equally frequent pairs in hash order, so another process can learn a few
    # different pieces from the same corpus; within a process the cache above gives one.
    learned = set(tok.get_vocab()) - set(SPECIAL_TOKENS)
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *sorted(learned)])}
    tok.model = models.WordPiece(
        vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100, continuing_subword_prefix="##"
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def load_tokenizer(name_or_dir: str):
    """The tokenizer of a checkpoint directory (or a cached hub id); it must be a fast one."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_dir, local_files_only=True)
    if not getattr(tok, "is_fast", False):
        raise ValueError(
            f"{name_or_dir}: the tokenizer is not a fast tokenizer; word_ids() alignment needs one"
        )
    return tok
