"""Raw documents → model-ready datasets: packed blocks for language modelling, encoded labelled examples."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import DatasetDict

from pipelines.config import DataConfig
from pipelines.data.sources import load_raw_datasets
from pipelines.data.transforms import encode_classification, label_names, pack_blocks, tokenize_documents
from pipelines.errors import PipelineError


@dataclass(frozen=True)
class LMData:
    """Packed blocks per split, and UTF-8 bytes per token for converting loss into bits per byte."""

    blocks: DatasetDict
    bytes_per_token: dict[str, float]


def prepare_lm_data(cfg: DataConfig, seed: int, tokenizer, packing) -> LMData:
    """Load, tokenize (a separator after each document) and pack every split into `block_size` blocks."""
    if cfg.block_size <= len(packing.prefix) + len(packing.suffix):
        raise PipelineError(f"data.block_size ({cfg.block_size}) leaves no room between the block's special tokens")
    raw = load_raw_datasets(cfg, seed)
    tokenized = raw.map(
        tokenize_documents,
        batched=True,
        num_proc=cfg.num_proc,
        remove_columns=raw["train"].column_names,
        fn_kwargs={"tokenizer": tokenizer, "text_column": cfg.text_column, "separator_id": packing.separator_id},
        desc="tokenizing",
    )
    bytes_per_token = {
        name: sum(split["num_bytes"]) / max(1, sum(split["num_tokens"])) for name, split in tokenized.items()
    }
    blocks = tokenized.map(
        pack_blocks,
        batched=True,
        num_proc=cfg.num_proc,
        remove_columns=tokenized["train"].column_names,
        fn_kwargs={"block_size": cfg.block_size, "prefix": packing.prefix, "suffix": packing.suffix},
        desc=f"packing into blocks of {cfg.block_size}",
    )
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
    return ClassificationData(examples=examples, labels=list(labels))


def _sorted_labels(names: list[str]) -> list[str]:
    """Distinct label names; numeric ones in numeric order (so 2 comes before 10)."""

    def key(name: str) -> tuple:
        numeric = name.lstrip("-").isdigit()
        return (not numeric, int(name) if numeric else 0, name)

    return sorted(set(names), key=key)
