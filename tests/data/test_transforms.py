"""Tokenizing documents (EOS, byte counts), packing blocks, and the whole raw → blocks preparation."""

from __future__ import annotations

import math
from itertools import chain

import pytest
from datasets import Dataset

from pipelines.config import DataConfig, TokenizerConfig
from pipelines.data.prepare import prepare_lm_data
from pipelines.data.transforms import pack_blocks, tokenize_documents
from pipelines.objectives import OBJECTIVES
from pipelines.tokenization import train_tokenizer

SENTENCES = [
    f"{who} {what} {when}"
    for who in ("The cat", "A dog", "My friend", "The teacher", "Our neighbour")
    for what in ("reads a book", "walks to the park", "writes a letter", "cooks dinner", "plays the piano")
    for when in ("in the morning.", "every evening.")
]


@pytest.fixture(scope="module")
def tokenizer():
    corpus = Dataset.from_dict({"text": SENTENCES})
    return train_tokenizer(TokenizerConfig(vocab_size=300, min_frequency=2), corpus, "text")


@pytest.fixture(scope="module")
def packing(tokenizer):
    return OBJECTIVES.get("clm").packing(tokenizer)


# --------------------------------------------------------------------------- tokenize_documents


def test_tokenize_documents_appends_eos_and_counts_bytes(tokenizer):
    texts = ["héllo wörld ✓", "The cat reads a book.", "日本"]
    out = tokenize_documents({"text": texts, "other": [1, 2, 3]}, tokenizer, "text", tokenizer.eos_token_id)
    assert set(out) == {"input_ids", "num_tokens", "num_bytes"}
    eos = tokenizer.eos_token_id
    for text, ids, n_tokens, n_bytes in zip(texts, out["input_ids"], out["num_tokens"], out["num_bytes"], strict=True):
        plain = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == [*plain, eos]
        assert ids.count(eos) == 1
        assert n_tokens == len(plain) + 1
        assert n_bytes == len(text.encode("utf-8")) + 1
    assert out["num_bytes"][0] == 13 + 4 + 1  # 13 characters; é, ö take 2 bytes, ✓ takes 3; plus the separator
    assert out["num_bytes"][2] == 7  # two 3-byte characters plus the separator
    assert tokenizer.decode(out["input_ids"][0][:-1]) == texts[0]


def test_tokenize_documents_custom_column(tokenizer):
    out = tokenize_documents({"body": ["a b"]}, tokenizer, "body", tokenizer.eos_token_id)
    assert out["input_ids"][0][-1] == tokenizer.eos_token_id
    assert out["num_bytes"] == [4]


def test_tokenize_documents_uses_the_given_separator(tokenizer):
    sep = tokenizer.pad_token_id
    out = tokenize_documents({"text": ["a b", "cat"]}, tokenizer, "text", sep)
    for text, ids in zip(["a b", "cat"], out["input_ids"], strict=True):
        assert ids == [*tokenizer(text, add_special_tokens=False)["input_ids"], sep]
    assert tokenizer.eos_token_id not in sum(out["input_ids"], [])
    assert out["num_bytes"] == [4, 4]  # the separator still counts one byte


# --------------------------------------------------------------------------- pack_blocks


@pytest.mark.parametrize("block_size", [1, 3, 4, 5, 7, 100])
def test_pack_blocks_keeps_every_token(block_size):
    docs = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10], [11, 12]]
    blocks = pack_blocks({"input_ids": docs}, block_size)["input_ids"]
    assert list(chain.from_iterable(blocks)) == list(chain.from_iterable(docs))
    assert all(len(b) == block_size for b in blocks[:-1])
    assert 1 <= len(blocks[-1]) <= block_size
    assert len(blocks) == math.ceil(12 / block_size)


def test_pack_blocks_exact_multiple_has_no_short_block():
    blocks = pack_blocks({"input_ids": [[1, 2], [3, 4, 5, 6]]}, 3)["input_ids"]
    assert blocks == [[1, 2, 3], [4, 5, 6]]


def test_pack_blocks_crosses_document_boundaries():
    blocks = pack_blocks({"input_ids": [[1, 2, 3], [4, 5, 6]]}, 4)["input_ids"]
    assert blocks == [[1, 2, 3, 4], [5, 6]]


@pytest.mark.parametrize("block_size", [3, 4, 5, 9])
def test_pack_blocks_prefix_and_suffix_wrap_every_block(block_size):
    docs = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10], [11, 12]]
    blocks = pack_blocks({"input_ids": docs}, block_size, prefix=(100,), suffix=(101,))["input_ids"]
    assert all(b[0] == 100 and b[-1] == 101 for b in blocks)
    assert all(len(b) == block_size for b in blocks[:-1])
    assert 3 <= len(blocks[-1]) <= block_size
    inner = [b[1:-1] for b in blocks]
    assert list(chain.from_iterable(inner)) == list(chain.from_iterable(docs))  # every token, in order
    assert len(blocks) == math.ceil(12 / (block_size - 2))


def test_pack_blocks_prefix_and_suffix_hand_example():
    blocks = pack_blocks({"input_ids": [[1, 2], [3, 4, 5]]}, 4, prefix=(7,), suffix=(8, 9))["input_ids"]
    assert blocks == [[7, 1, 8, 9], [7, 2, 8, 9], [7, 3, 8, 9], [7, 4, 8, 9], [7, 5, 8, 9]]


def test_pack_blocks_ignores_other_columns():
    out = pack_blocks({"input_ids": [[1, 2, 3]], "num_bytes": [9], "num_tokens": [3]}, 2)
    assert out == {"input_ids": [[1, 2], [3]]}


# --------------------------------------------------------------------------- prepare_lm_data


def _expected(tokenizer, texts):
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    n_bytes = sum(len(t.encode("utf-8")) + 1 for t in texts)
    n_tokens = sum(len(i) for i in ids)
    return list(chain.from_iterable(ids)), n_bytes / n_tokens


def test_prepare_lm_data(tmp_path, tokenizer, packing):
    train_texts = ["The cat reads a book in the morning.", "Ünïcödé text — with dashes", "A dog cooks dinner."]
    val_texts = ["My friend plays the piano every evening.", "東京 🎉"]
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.txt").write_text("\n".join(train_texts[:2]) + "\n", encoding="utf-8")
    (tmp_path / "train" / "b.txt").write_text(train_texts[2] + "\n\n\n", encoding="utf-8")
    (tmp_path / "val.txt").write_text("\n".join(val_texts) + "\n", encoding="utf-8")
    cfg = DataConfig(
        source="files",
        path=str(tmp_path / "train"),
        validation_path=str(tmp_path / "val.txt"),
        sample_by="line",
        block_size=8,
    )
    data = prepare_lm_data(cfg, seed=0, tokenizer=tokenizer, packing=packing)

    assert set(data.blocks) == {"train", "validation"}
    assert set(data.bytes_per_token) == {"train", "validation"}
    for name, texts in (("train", train_texts), ("validation", val_texts)):
        stream, bytes_per_token = _expected(tokenizer, texts)
        blocks = data.blocks[name]
        assert blocks.column_names == ["input_ids"]
        rows = list(blocks["input_ids"])
        assert list(chain.from_iterable(rows)) == stream
        assert all(len(r) == 8 for r in rows[:-1])
        assert 1 <= len(rows[-1]) <= 8
        assert data.bytes_per_token[name] == pytest.approx(bytes_per_token, rel=1e-12)


def test_prepare_lm_data_carved_validation(tmp_path, tokenizer, packing):
    lines = SENTENCES[:20]
    (tmp_path / "a.jsonl").write_text("".join(f'{{"text": "{t}"}}\n' for t in lines))
    cfg = DataConfig(source="files", path=str(tmp_path / "a.jsonl"), validation_fraction=0.25, block_size=16)
    data = prepare_lm_data(cfg, seed=1, tokenizer=tokenizer, packing=packing)
    eos = tokenizer.eos_token_id
    train_eos = sum(r.count(eos) for r in data.blocks["train"]["input_ids"])
    val_eos = sum(r.count(eos) for r in data.blocks["validation"]["input_ids"])
    assert (train_eos, val_eos) == (15, 5)  # one EOS per document, none lost in packing
    _, all_bpt = _expected(tokenizer, lines)
    assert min(data.bytes_per_token.values()) <= all_bpt <= max(data.bytes_per_token.values())
