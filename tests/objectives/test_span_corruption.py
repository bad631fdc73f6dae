"""T5 span corruption: length arithmetic, the random span mask, corrupt + collator, and text-to-text encoding."""

from __future__ import annotations

import pytest
import torch

from pipelines.config import DataConfig, load_config
from pipelines.data.prepare import prepare_lm_data
from pipelines.errors import PipelineError
from pipelines.objectives.seq2seq import (
    Seq2SeqCollator,
    build_seq2seq_collator,
    corrupt,
    corrupted_lengths,
    encode_seq2seq,
    random_spans_mask,
    raw_length_for,
    sentinel_ids,
    span_counts,
    span_packing,
)
from pipelines.tokenization import load_tokenizer

DENSITY, MEAN_SPAN = 0.15, 3.0
BLOCK = 64  # corrupted input length; the raw blocks are raw_length_for(BLOCK) = 70 tokens


@pytest.fixture(scope="module")
def t5_tokenizer():
    return load_tokenizer("tokenizers/t5-builtin")


@pytest.fixture(scope="module")
def gpt_tokenizer():
    return load_tokenizer("tokenizers/gpt-builtin")


@pytest.fixture(scope="module")
def sentinels(t5_tokenizer) -> list[int]:
    ids = sentinel_ids(t5_tokenizer)
    assert ids is not None and len(ids) == 100
    assert t5_tokenizer.convert_ids_to_tokens(ids[:3].tolist()) == ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]
    return ids.tolist()


@pytest.fixture(scope="module")
def raw_blocks(t5_tokenizer) -> list[list[int]]:
    """Real raw blocks, packed as the `span` objective packs them (EOS between documents)."""
    cfg = load_config(None, [f"data.block_size={BLOCK}", "objective.name=span"])
    packing = span_packing(t5_tokenizer, cfg)
    assert packing.separator_id == t5_tokenizer.eos_token_id
    assert packing.block_size == raw_length_for(BLOCK, DENSITY, MEAN_SPAN) == 70
    data = DataConfig(max_documents=6, validation_fraction=0.0, block_size=BLOCK)
    blocks = prepare_lm_data(data, 0, t5_tokenizer, packing).blocks["train"]["input_ids"]
    assert len(blocks) > 10 and all(len(b) == packing.block_size for b in blocks[:-1])
    return blocks


def _collator(tokenizer, eval_seed=None) -> Seq2SeqCollator:
    return build_seq2seq_collator(tokenizer, load_config(None).objective, eval_seed=eval_seed)


def _reconstruct(inputs: list[int], target: list[int], sentinels: list[int], eos: int) -> list[int]:
    """The original block: every input sentinel replaced by the target's span after that sentinel."""
    assert inputs[-1] == eos and target[-1] == eos
    inputs, target = inputs[:-1], target[:-1]
    assert target[0] in sentinels
    spans: dict[int, list[int]] = {}
    current = None
    for token in target:
        if token in sentinels:
            assert token not in spans  # each sentinel once in the target
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    original = []
    for token in inputs:
        original.extend(spans.pop(token) if token in sentinels else [token])
    assert not spans  # every target span has its sentinel in the input
    return original


def _strip(row: torch.Tensor, pad: int) -> list[int]:
    return row[row != pad].tolist()


# --------------------------------------------------------------------------- length arithmetic


@pytest.mark.parametrize("length", [32, 64, 128, 256, 512])
def test_raw_length_gives_exact_input_length(length):
    raw = raw_length_for(length, DENSITY, MEAN_SPAN)
    assert corrupted_lengths(raw, DENSITY, MEAN_SPAN)[0] == length
    assert corrupted_lengths(raw + 1, DENSITY, MEAN_SPAN)[0] > length  # the longest that fits


def test_t5_published_lengths():
    # T5's compute_input_and_target_lengths(512, 0.15, 3): 568 raw tokens → 512 inputs, 114 targets.
    assert raw_length_for(512, DENSITY, MEAN_SPAN) == 568
    assert corrupted_lengths(568, DENSITY, MEAN_SPAN) == (512, 114)
    assert span_counts(568, DENSITY, MEAN_SPAN) == (85, 28)


def test_block_too_short_for_span_corruption():
    with pytest.raises(PipelineError, match="too short"):
        raw_length_for(2, DENSITY, MEAN_SPAN)


# --------------------------------------------------------------------------- random_spans_mask


@pytest.mark.parametrize("length", [2, 3, 5, 34, 70, 141, 568])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_counts_match_span_counts(length, seed):
    mask = random_spans_mask(length, DENSITY, MEAN_SPAN, torch.Generator().manual_seed(seed))
    noise, spans = span_counts(length, DENSITY, MEAN_SPAN)
    assert mask.shape == (length,) and mask.dtype == torch.bool
    assert int(mask.sum()) == noise
    starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])
    assert int(starts.sum()) == spans
    assert not mask[0]  # a kept run comes first


def test_mask_is_reproducible_with_a_seeded_generator():
    first = random_spans_mask(568, DENSITY, MEAN_SPAN, torch.Generator().manual_seed(7))
    again = random_spans_mask(568, DENSITY, MEAN_SPAN, torch.Generator().manual_seed(7))
    other = random_spans_mask(568, DENSITY, MEAN_SPAN, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_corrupt_small_example():
    tokens = torch.tensor([10, 11, 12, 13, 14, 15, 16])
    mask = torch.tensor([False, True, True, False, False, True, False])
    inputs, target = corrupt(tokens, mask, torch.tensor([100, 101, 102]), eos_id=1)
    assert inputs.tolist() == [10, 100, 13, 14, 101, 16, 1]
    assert target.tolist() == [100, 11, 12, 101, 15, 1]


# --------------------------------------------------------------------------- the collator on raw blocks


def test_full_blocks_have_exact_lengths_and_no_padding(t5_tokenizer, raw_blocks):
    full = raw_blocks[:8]
    torch.manual_seed(0)
    batch = _collator(t5_tokenizer)([{"input_ids": b} for b in full])
    input_length, target_length = corrupted_lengths(len(full[0]), DENSITY, MEAN_SPAN)
    assert input_length == BLOCK
    assert batch["input_ids"].shape == (8, input_length)
    assert batch["labels"].shape == (8, target_length)
    assert batch["attention_mask"].shape == (8, input_length)
    assert bool((batch["attention_mask"] == 1).all())
    assert not bool((batch["labels"] == -100).any())


def test_sentinels_in_order_and_every_token_once(t5_tokenizer, sentinels, raw_blocks):
    eos = t5_tokenizer.eos_token_id
    torch.manual_seed(1)
    batch = _collator(t5_tokenizer)([{"input_ids": b} for b in raw_blocks[:8]])
    spans = span_counts(len(raw_blocks[0]), DENSITY, MEAN_SPAN)[1]
    for row, block in enumerate(raw_blocks[:8]):
        inputs, target = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        assert [t for t in inputs if t in sentinels] == sentinels[:spans]
        assert [t for t in target if t in sentinels] == sentinels[:spans]
        assert inputs[-1] == eos and target[-1] == eos
        assert _reconstruct(inputs, target, sentinels, eos) == block


def test_blocks_of_different_lengths_are_padded(t5_tokenizer, sentinels, raw_blocks):
    eos, pad = t5_tokenizer.eos_token_id, t5_tokenizer.pad_token_id
    examples = [raw_blocks[0], raw_blocks[1][:20], raw_blocks[2][:7], raw_blocks[-1]]
    torch.manual_seed(2)
    batch = _collator(t5_tokenizer)([{"input_ids": b} for b in examples])
    lengths = [corrupted_lengths(len(b), DENSITY, MEAN_SPAN) for b in examples]
    assert batch["input_ids"].shape == (4, max(n for n, _ in lengths))
    assert batch["labels"].shape == (4, max(m for _, m in lengths))
    for row, (block, (n, m)) in enumerate(zip(examples, lengths, strict=True)):
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        assert bool((batch["input_ids"][row, n:] == pad).all())
        assert bool((batch["labels"][row, m:] == -100).all())
        assert not bool((batch["labels"][row, :m] == -100).any())
        inputs, target = batch["input_ids"][row, :n].tolist(), batch["labels"][row, :m].tolist()
        assert _reconstruct(inputs, target, sentinels, eos) == block


def test_one_token_block_is_collated(t5_tokenizer, sentinels):
    # pack_blocks keeps the tail of every map batch as a final short block, which can be a single token: the
    # built-in corpus with data.max_documents=25 and data.block_size=32 or 64 ends in a block of just its last EOS.
    eos = t5_tokenizer.eos_token_id
    batch = _collator(t5_tokenizer)([{"input_ids": [105]}, {"input_ids": [105, 3907, 240]}])
    inputs = _strip(batch["input_ids"][0], t5_tokenizer.pad_token_id)
    target = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert inputs[-1] == eos and target[-1] == eos
    assert [t for t in inputs + target if t not in (eos, *sentinels)] == [105]


# --------------------------------------------------------------------------- text-to-text pass-through


def test_pairs_pass_through_unchanged(t5_tokenizer):
    pairs = [{"input_ids": [5, 6, 7, 1], "labels": [8, 1]}, {"input_ids": [9, 1], "labels": [10, 11, 12, 1]}]
    batch = _collator(t5_tokenizer)(pairs)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [9, 1, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[8, 1, -100, -100], [10, 11, 12, 1]]


def test_raw_block_and_pair_in_one_batch(t5_tokenizer, sentinels, raw_blocks):
    eos = t5_tokenizer.eos_token_id
    pair = {"input_ids": [5, 6, 7, 1], "labels": [8, 1]}
    batch = _collator(t5_tokenizer)([{"input_ids": raw_blocks[0], "labels": []}, pair])
    n, m = corrupted_lengths(len(raw_blocks[0]), DENSITY, MEAN_SPAN)
    assert batch["input_ids"].shape == (2, n) and batch["labels"].shape == (2, m)
    assert _reconstruct(batch["input_ids"][0].tolist(), batch["labels"][0].tolist(), sentinels, eos) == raw_blocks[0]
    assert batch["input_ids"][1, :4].tolist() == [5, 6, 7, 1]
    assert batch["attention_mask"][1].tolist() == [1] * 4 + [0] * (n - 4)
    assert batch["labels"][1].tolist() == [8, 1] + [-100] * (m - 2)


# --------------------------------------------------------------------------- seeded evaluation


def test_eval_seed_makes_corruption_a_function_of_the_block(t5_tokenizer):
    block = list(range(200, 768))  # 568 tokens: 28 spans, so two random corruptions almost surely differ
    seeded = _collator(t5_tokenizer, eval_seed=3)
    first = seeded([{"input_ids": block}])
    torch.manual_seed(123)  # the global RNG plays no part
    again = seeded([{"input_ids": list(range(900, 950))}, {"input_ids": block}])
    assert torch.equal(first["input_ids"][0], again["input_ids"][1])
    assert torch.equal(first["labels"][0], again["labels"][1])

    unseeded = _collator(t5_tokenizer)
    one, two = unseeded([{"input_ids": block}]), unseeded([{"input_ids": block}])
    assert not torch.equal(one["input_ids"], two["input_ids"])


# --------------------------------------------------------------------------- tokenizers without sentinels


def test_tokenizer_without_sentinels_is_refused(gpt_tokenizer):
    assert sentinel_ids(gpt_tokenizer) is None
    collator = _collator(gpt_tokenizer)
    assert collator([{"input_ids": [5, 6], "labels": [7]}])["labels"].tolist() == [[7]]  # pairs are fine
    with pytest.raises(PipelineError, match="sentinel"):
        collator([{"input_ids": list(range(10, 50))}])
    with pytest.raises(PipelineError, match="sentinel"):
        span_packing(gpt_tokenizer, load_config(None, ["objective.name=span"]))


def test_block_needing_more_sentinels_than_the_tokenizer_has(t5_tokenizer):
    cfg = load_config(None, ["objective.name=span", "data.block_size=2048"])  # 114 spans > 100 sentinels
    with pytest.raises(PipelineError, match="sentinels"):
        span_packing(t5_tokenizer, cfg)


# --------------------------------------------------------------------------- encode_seq2seq


def test_encode_seq2seq_truncates_and_flags(t5_tokenizer):
    eos = t5_tokenizer.eos_token_id
    short, long = "hello world", " ".join(["the quick brown fox jumps over the lazy dog"] * 6)
    full_short, full_long = (t5_tokenizer(t)["input_ids"] for t in (short, long))
    assert full_short[-1] == eos and len(full_short) < 10 < len(full_long)
    out = encode_seq2seq([short, long], [long, short], t5_tokenizer, max_input_length=10, max_target_length=12)
    assert out["input_ids"] == [full_short, full_long[:9] + [eos]]
    assert out["labels"] == [full_long[:11] + [eos], full_short]
    assert out["input_truncated"] == [False, True]
    assert out["target_truncated"] == [True, False]
    assert all(ids[-1] == eos for ids in out["input_ids"] + out["labels"])
