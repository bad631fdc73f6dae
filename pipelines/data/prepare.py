"""Raw documents → model-ready datasets: packed blocks for language modelling, encoded labelled examples."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from pipelines.config import DataConfig
from pipelines.data.sources import load_raw_datasets
from pipelines.data.tokens import TokenBlocks, flat_tokens, read_meta, write_token_files
from pipelines.data.transforms import encode_classification, label_names, pack_blocks, tokenize_documents
from pipelines.errors import PipelineError


@dataclass(frozen=True)
class LMData:
    """Packed blocks per split, and UTF-8 bytes per token for converting loss into bits per byte."""

    blocks: dict
    bytes_per_token: dict[str, float]


def tokenize_splits(cfg: DataConfig, seed: int, tokenizer, separator_id: int) -> DatasetDict:
    """Every split's documents as token ids with the separator after each, plus token and byte counts."""
    raw = load_raw_datasets(cfg, seed)
    return raw.map(
        tokenize_documents,
        batched=True,
        num_proc=cfg.num_proc,
        remove_columns=raw["train"].column_names,
        fn_kwargs={"tokenizer": tokenizer, "text_column": cfg.text_column, "separator_id": separator_id},
        desc="tokenizing",
    )


def prepare_lm_data(cfg: DataConfig, seed: int, tokenizer, packing) -> LMData:
    """Blocks of `block_size` for every split: from prepared token files, or tokenized and packed in memory."""
    block_size = packing.block_size or cfg.block_size
    if block_size <= len(packing.prefix) + len(packing.suffix):
        raise PipelineError(f"data.block_size ({cfg.block_size}) leaves no room between the block's special tokens")
    if cfg.prepared_path:
        return _load_prepared(cfg, seed, tokenizer, packing)
    if cfg.streaming:
        return _stream(cfg, seed, tokenizer, packing)
    tokenized = tokenize_splits(cfg, seed, tokenizer, packing.separator_id)
    bytes_per_token = {
        name: sum(split["num_bytes"]) / max(1, sum(split["num_tokens"])) for name, split in tokenized.items()
    }
    packed = {name: split for name, split in tokenized.items() if not (cfg.shift_blocks and name == "train")}
    blocks = DatasetDict(packed).map(
        pack_blocks,
        batched=True,
        num_proc=cfg.num_proc,
        remove_columns=tokenized["train"].column_names,
        fn_kwargs={"block_size": block_size, "prefix": packing.prefix, "suffix": packing.suffix},
        desc=f"packing into blocks of {block_size}",
    )
    blocks = dict(blocks)  # the shifted training split is no `datasets` table
    if cfg.shift_blocks:  # the training text as one token array, cut anew each epoch
        tokens = flat_tokens(tokenized["train"], len(tokenizer))
        blocks["train"] = TokenBlocks(tokens, block_size, packing.prefix, packing.suffix, shift_seed=seed)
    return LMData(blocks=blocks, bytes_per_token=bytes_per_token)


def prepare_token_files(cfg: DataConfig, seed: int, tokenizer, packing, directory: Path) -> dict:
    """Tokenize every split of the source once into memory-mappable files in `directory`; returns their metadata."""
    tokenized = tokenize_splits(cfg, seed, tokenizer, packing.separator_id)
    return write_token_files(tokenized, directory, len(tokenizer), packing.separator_id, _fingerprint(tokenizer))


def _stream(cfg: DataConfig, seed: int, tokenizer, packing) -> LMData:
    """Lazily tokenized and packed splits; the training blocks pass through a seeded shuffle buffer.

    The same transforms as the in-memory path, in the same 1000-document batches, so the token stream
    is identical. Bytes per token are measured on the validation split, which is read once here.
    """
    raw = load_raw_datasets(cfg, seed)
    columns = list(next(iter(raw["train"])))
    tokenized = {
        name: split.map(tokenize_documents, batched=True, remove_columns=columns, fn_kwargs={
            "tokenizer": tokenizer, "text_column": cfg.text_column, "separator_id": packing.separator_id})
        for name, split in raw.items()
    }  # fmt: skip
    pack = {"block_size": packing.block_size or cfg.block_size, "prefix": packing.prefix, "suffix": packing.suffix}
    blocks = {
        name: split.map(pack_blocks, batched=True, remove_columns=["input_ids", "num_tokens", "num_bytes"],
                        fn_kwargs=pack)
        for name, split in tokenized.items()
    }  # fmt: skip
    blocks["train"] = blocks["train"].shuffle(seed=seed, buffer_size=cfg.shuffle_buffer)
    bytes_per_token = {}
    if "validation" in tokenized:  # measured on the first 1000 documents: the stream may be huge
        counts = [
            (r["num_bytes"], r["num_tokens"])
            for r in tokenized["validation"].select_columns(["num_bytes", "num_tokens"]).take(1000)
        ]
        bytes_per_token["validation"] = sum(b for b, _ in counts) / max(1, sum(t for _, t in counts))
    return LMData(blocks=blocks, bytes_per_token=bytes_per_token)


def _fingerprint(tokenizer) -> str:
    """A hash of the tokenizer's full definition: a retrained tokenizer of the same size differs."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def _load_prepared(cfg: DataConfig, seed: int, tokenizer, packing) -> LMData:
    directory = Path(cfg.prepared_path)
    meta = read_meta(directory)
    if meta.get("tokenizer_sha256") != _fingerprint(tokenizer) or meta["separator_id"] != packing.separator_id:
        raise PipelineError(
            f"the tokens at {directory} were prepared with another tokenizer or objective; run `prepare` again"
        )
    blocks = {
        name: TokenBlocks(
            np.memmap(directory / f"{name}.bin", dtype=meta["dtype"], mode="r"),
            packing.block_size or cfg.block_size,
            packing.prefix,
            packing.suffix,
            shift_seed=seed if cfg.shift_blocks and name == "train" else None,
        )
        for name in meta["splits"]
    }
    bytes_per_token = {name: split["bytes"] / max(1, split["tokens"]) for name, split in meta["splits"].items()}
    return LMData(blocks=blocks, bytes_per_token=bytes_per_token)


@dataclass(frozen=True)
class ClassificationData:
    """Encoded examples per split (`input_ids`, `attention_mask`, maybe `token_type_ids`, `labels`)."""

    examples: DatasetDict
    labels: list[str]


def prepare_classification_data(cfg: DataConfig, seed: int, tokenizer) -> ClassificationData:
    """Load sentences (or pairs) with labels, check the labels, and tokenize with truncation to `block_size`."""
    columns = {"data.text_column": cfg.text_column, "data.label_column": cfg.label_column}
    if cfg.text_pair_column:
        columns["data.text_pair_column"] = cfg.text_pair_column
    raw = load_raw_datasets(cfg, seed, columns)
    labels = cfg.labels or _sorted_labels(label_names(raw["train"][cfg.label_column], cfg.label_map))
    if len(labels) < 2:
        raise PipelineError(f"classification needs at least 2 labels; found {labels} in '{cfg.label_column}'")
    for split_name, split in raw.items():
        unknown = set(label_names(split[cfg.label_column], cfg.label_map)) - set(labels)
        if unknown:
            shown = ", ".join(sorted(unknown)[:10])
            raise PipelineError(
                f"{split_name} data has labels not in the label set: {shown} (labels: {', '.join(labels)}; "
                "set data.labels or data.label_map)"
            )
    examples = raw.map(
        encode_classification,
        batched=True,
        num_proc=cfg.num_proc,
        remove_columns=raw["train"].column_names,
        fn_kwargs={
            "tokenizer": tokenizer,
            "text_column": cfg.text_column,
            "pair_column": cfg.text_pair_column,
            "label_column": cfg.label_column,
            "label_ids": {name: i for i, name in enumerate(labels)},
            "label_map": cfg.label_map,
            "max_length": cfg.block_size,
        },
        desc="tokenizing",
    )
    if cfg.max_train_examples is not None:
        examples["train"] = stratified_subset(examples["train"], cfg.max_train_examples, labels, seed)
    return ClassificationData(examples=examples, labels=list(labels))


def stratified_subset(examples: Dataset, size: int, labels: list[str], seed: int) -> Dataset:
    """`size` examples drawn by `seed` with the label proportions of the whole set (datasets' stratified split)."""
    if size > len(examples):
        raise PipelineError(f"data.max_train_examples is {size} but the training data has {len(examples)} examples")
    if size == len(examples):
        return examples
    if size < len(labels):
        raise PipelineError(f"data.max_train_examples is {size}, fewer than the {len(labels)} labels it must cover")
    classed = examples.cast_column("labels", ClassLabel(names=list(labels)))
    subset = classed.train_test_split(train_size=size, stratify_by_column="labels", seed=seed)["train"]
    return subset.cast_column("labels", examples.features["labels"])


def _sorted_labels(names: list[str]) -> list[str]:
    """Distinct label names; numeric ones in numeric order (so 2 comes before 10)."""

    def key(name: str) -> tuple:
        numeric = name.lstrip("-").isdigit()
        return (not numeric, int(name) if numeric else 0, name)

    return sorted(set(names), key=key)
