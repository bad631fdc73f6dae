"""The masked-LM collator (token and whole-word selection, 80/10/10 corruption, seeded evaluation) and packing."""

from __future__ import annotations

from itertools import chain

import pytest
import torch
import transformers
from datasets import Dataset

from pipelines.config import DataConfig, ObjectiveConfig, TokenizerConfig
from pipelines.data.prepare import prepare_lm_data
from pipelines.data.sources import load_raw_datasets
from pipelines.data.transforms import pack_blocks, tokenize_documents
from pipelines.errors import PipelineError
from pipelines.objectives import OBJECTIVES, Packing, auto_class_for
from pipelines.objectives.mlm import MaskedLMCollator, build_mlm_collator, mlm_packing
from pipelines.tokenization import train_tokenizer

BLOCK = 64
ROWS = 64
SHORT = 40  # every 8th example is cut to this length, so the batch has padding


@pytest.fixture(scope="module")
def documents() -> list[str]:
    """Real English text: the first documents of the built-in Python-docs corpus."""
    raw = load_raw_datasets(DataConfig(max_documents=150, validation_fraction=0.0), seed=0)
    return list(raw["train"]["text"])


@pytest.fixture(scope="module")
def tokenizer(documents):
    cfg = TokenizerConfig(kind="wordpiece", vocab_size=800, lowercase=True)
    return train_tokenizer_on(cfg, documents)


def train_tokenizer_on(cfg: TokenizerConfig, texts: list[str]):
    return train_tokenizer(cfg, Dataset.from_dict({"text": texts}), "text")


@pytest.fixture(scope="module")
def blocks(documents, tokenizer) -> list[list[int]]:
    packing = mlm_packing(tokenizer)
    tokenized = tokenize_documents({"text": documents}, tokenizer, "text", packing.separator_id)
    packed = pack_blocks(tokenized, BLOCK, packing.prefix, packing.suffix)["input_ids"]
    assert len(packed) > ROWS
    return packed


@pytest.fixture(scope="module")
def examples(blocks) -> list[dict]:
    return [{"input_ids": b[:SHORT] if i % 8 == 0 else b} for i, b in enumerate(blocks[:ROWS])]


def _original(examples: list[dict], tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) original ids right-padded with [PAD], and the mask of real (non-padding) positions."""
    ids = torch.full((len(examples), BLOCK), tokenizer.pad_token_id)
    real = torch.zeros(len(examples), BLOCK, dtype=torch.bool)
    for row, example in enumerate(examples):
        ids[row, : len(example["input_ids"])] = torch.tensor(example["input_ids"])
        real[row, : len(example["input_ids"])] = True
    return ids, real


def _maskable(ids: torch.Tensor, real: torch.Tensor, tokenizer) -> torch.Tensor:
    return real & ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))


def _collate(tokenizer, examples, seed=0, eval_seed=None, **objective):
    collator = build_mlm_collator(tokenizer, ObjectiveConfig(name="mlm", **objective), eval_seed=eval_seed)
    torch.manual_seed(seed)
    return collator(examples)


def _words(tokens: list[str], specials: set[str]) -> list[list[int]]:
    """Positions of each word: a start piece and the `##` pieces after it (leading orphan pieces are skipped)."""
    words: list[list[int]] = []
    previous_is_piece = False
    for position, token in enumerate(tokens):
        if token in specials:
            previous_is_piece = False
            continue
        if token.startswith("##"):
            if previous_is_piece:
                words[-1].append(position)
            continue
        words.append([position])
        previous_is_piece = True
    return words


# --------------------------------------------------------------------------- registration and packing


def test_mlm_registered():
    objective = OBJECTIVES.get("mlm")
    assert objective.families == ("masked",)
    assert auto_class_for(objective) is transformers.AutoModelForMaskedLM
    assert objective.shift_labels is False  # position t predicts its own label
    assert objective.scores_all_tokens is False  # only ~15% of tokens are targets: no bits per byte
    assert objective.packing is mlm_packing
    assert objective.build_collator is build_mlm_collator


def test_mlm_packing(tokenizer):
    packing = mlm_packing(tokenizer)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert packing == Packing(separator_id=sep, prefix=(cls,), suffix=(sep,))


def test_packed_blocks_are_cls_text_sep(blocks, documents, tokenizer):
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert all(b[0] == cls and b[-1] == sep for b in blocks)
    assert all(len(b) <= BLOCK for b in blocks)
    assert all(len(b) == BLOCK for b in blocks[:-1])
    # stripping each block's [CLS] … [SEP] gives back every document followed by its separator, in order
    stream = list(chain.from_iterable(b[1:-1] for b in blocks))
    expected = [[*tokenizer(d, add_special_tokens=False)["input_ids"], sep] for d in documents]
    assert stream == list(chain.from_iterable(expected))


def test_block_too_small_for_cls_and_sep_is_an_error(tokenizer):
    cfg = DataConfig(block_size=2, max_documents=5, validation_fraction=0.0)
    with pytest.raises(PipelineError, match="leaves no room"):
        prepare_lm_data(cfg, 0, tokenizer, mlm_packing(tokenizer))


def test_byte_bpe_tokenizer_is_refused():
    bpe = train_tokenizer_on(TokenizerConfig(kind="byte_bpe", vocab_size=280), ["a tiny corpus", "of two lines"])
    assert bpe.mask_token_id is None
    with pytest.raises(PipelineError, match="no mask token"):
        build_mlm_collator(bpe, ObjectiveConfig(name="mlm"))
    with pytest.raises(PipelineError, match=r"\[CLS\] and \[SEP\]"):
        mlm_packing(bpe)


# --------------------------------------------------------------------------- token-level selection


def test_collator_fields(tokenizer, examples):
    collator = build_mlm_collator(tokenizer, ObjectiveConfig(name="mlm", mlm_probability=0.2), eval_seed=5)
    assert isinstance(collator, MaskedLMCollator)
    assert collator.mask_token_id == tokenizer.mask_token_id
    assert collator.pad_token_id == tokenizer.pad_token_id
    assert collator.vocab_size == len(tokenizer)
    assert collator.probability == 0.2
    assert collator.eval_seed == 5
    assert collator.continuation is None  # token-level selection by default


def test_shapes_and_padding(tokenizer, examples):
    batch = _collate(tokenizer, examples)
    ids, real = _original(examples, tokenizer)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.shape == (ROWS, BLOCK) and t.dtype == torch.long for t in batch.values())
    assert torch.equal(batch["attention_mask"], real.long())
    assert (batch["labels"][~real] == -100).all()
    assert (batch["input_ids"][~real] == tokenizer.pad_token_id).all()


def test_selection_rate_and_labels(tokenizer, examples):
    batch = _collate(tokenizer, examples)
    ids, real = _original(examples, tokenizer)
    maskable = _maskable(ids, real, tokenizer)
    selected = batch["labels"] != -100
    assert maskable.sum() > 3500  # 64 x 64 minus [CLS]/[SEP] and the padding of the short rows
    assert abs(selected[maskable].float().mean().item() - 0.15) < 0.02
    assert not selected[~maskable].any()  # special tokens and padding are never selected
    assert torch.equal(batch["labels"][selected], ids[selected])
    assert (batch["labels"][~selected] == -100).all()
    assert torch.equal(batch["input_ids"][~selected], ids[~selected])  # only selected positions change


def test_probability_is_respected(tokenizer, examples):
    batch = _collate(tokenizer, examples, mlm_probability=0.4)
    ids, real = _original(examples, tokenizer)
    maskable = _maskable(ids, real, tokenizer)
    assert abs((batch["labels"] != -100)[maskable].float().mean().item() - 0.4) < 0.03


def test_80_10_10_corruption(tokenizer, examples):
    batch = _collate(tokenizer, examples, seed=1)
    ids, _ = _original(examples, tokenizer)
    selected = batch["labels"] != -100
    new, old = batch["input_ids"][selected], ids[selected]
    n = selected.sum().item()
    masked = (new == tokenizer.mask_token_id).sum().item() / n
    kept = (new == old).sum().item() / n
    replaced = ((new != old) & (new != tokenizer.mask_token_id)).sum().item() / n
    assert abs(masked - 0.8) < 0.06
    assert abs(kept - 0.1) < 0.05
    assert abs(replaced - 0.1) < 0.05
    assert ((batch["input_ids"] >= 0) & (batch["input_ids"] < len(tokenizer))).all()


def test_eval_seed_makes_masks_a_function_of_the_batch(tokenizer, examples):
    collator = build_mlm_collator(tokenizer, ObjectiveConfig(name="mlm"), eval_seed=123)
    torch.manual_seed(0)
    first = collator(examples)
    torch.manual_seed(99)  # the global RNG plays no part
    state = torch.get_rng_state()
    second = collator(examples)
    assert torch.equal(torch.get_rng_state(), state)  # nor is it consumed
    assert all(torch.equal(first[k], second[k]) for k in first)
    other_seed = build_mlm_collator(tokenizer, ObjectiveConfig(name="mlm"), eval_seed=124)(examples)
    assert not torch.equal(first["labels"], other_seed["labels"])


def test_without_eval_seed_calls_differ(tokenizer, examples):
    collator = build_mlm_collator(tokenizer, ObjectiveConfig(name="mlm"))
    torch.manual_seed(0)
    first, second = collator(examples), collator(examples)
    assert not torch.equal(first["labels"], second["labels"])
    assert not torch.equal(first["input_ids"], second["input_ids"])


def test_does_not_mutate_examples(tokenizer, examples):
    before = [list(e["input_ids"]) for e in examples]
    _collate(tokenizer, examples)
    assert [e["input_ids"] for e in examples] == before


# --------------------------------------------------------------------------- whole-word masking


@pytest.fixture(scope="module")
def whole_word(tokenizer, examples):
    """The batch, its whole-word-masked collation, and each row's words (grouped from the token strings)."""
    batch = _collate(tokenizer, examples, seed=2, whole_word_mask=True)
    ids, _ = _original(examples, tokenizer)
    specials = set(tokenizer.all_special_tokens)
    words = [_words(tokenizer.convert_ids_to_tokens(row), specials) for row in ids.tolist()]
    return batch, ids, words


def test_whole_word_continuation_table(tokenizer):
    collator = build_mlm_collator(tokenizer, ObjectiveConfig(name="mlm", whole_word_mask=True))
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert collator.continuation.tolist() == [p.startswith("##") for p in pieces]
    assert 0 < collator.continuation.sum() < len(tokenizer)


def test_whole_word_all_pieces_or_none(tokenizer, whole_word):
    batch, ids, words = whole_word
    selected = batch["labels"] != -100
    multi_piece = 0
    for row, row_words in enumerate(words):
        for word in row_words:
            flags = selected[row, word].tolist()
            assert all(flags) or not any(flags), (row, word, tokenizer.convert_ids_to_tokens(ids[row, word].tolist()))
            multi_piece += len(word) > 1
    assert multi_piece > 100  # the check covers many split words
    in_words = torch.zeros_like(selected)
    for row, row_words in enumerate(words):
        for word in row_words:
            in_words[row, word] = True
    assert not selected[~in_words].any()  # specials, padding and orphan leading pieces are never selected
    assert torch.equal(batch["labels"][selected], ids[selected])
    assert selected.sum() > 0


def test_whole_word_selects_multi_piece_words(whole_word):
    batch, _, words = whole_word
    selected = batch["labels"] != -100
    multi = [
        selected[row, word[0]].item() for row, row_words in enumerate(words) for word in row_words if len(word) > 1
    ]
    assert len(multi) > 100
    assert abs(sum(multi) / len(multi) - 0.15) < 0.06


def test_whole_word_selects_words_before_sep(tokenizer, whole_word):
    batch, ids, words = whole_word
    selected = batch["labels"] != -100
    special = set(tokenizer.all_special_ids)  # [SEP] ends every block and document; [PAD] follows short rows
    last_words = [
        selected[row, word[0]].item()
        for row, row_words in enumerate(words)
        for word in row_words
        if word[-1] + 1 < BLOCK and ids[row, word[-1] + 1].item() in special
    ]
    assert len(last_words) >= ROWS  # at least one per row
    assert sum(last_words) > 0  # at p = 0.15, P(none of 64+ selected) < 1e-4


def test_whole_word_selection_rate(tokenizer, whole_word):
    batch, ids, words = whole_word
    selected = batch["labels"] != -100
    single = [selected[row, word[0]].item() for row, row_words in enumerate(words) for word in row_words]
    # about 15% of words (whatever their length) should be chosen
    assert 0.05 < sum(single) / len(single) < 0.25
