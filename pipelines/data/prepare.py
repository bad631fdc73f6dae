"""Raw documents → tokenized, packed blocks ready for a collator."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import DatasetDict

from pipelines.config import DataConfig
from pipelines.data.sources import load_raw_datasets
from pipelines.data.transforms import pack_blocks, tokenize_documents


@dataclass(frozen=True)
class LMData:
    """Packed blocks per split, and UTF-8 bytes per token for converting loss into bits per byte."""

    blocks: DatasetDict
    bytes_per_token: dict[str, float]


def prepare_lm_data(cfg: DataConfig, seed: int, tokenizer) -> LMData:
    """Load, tokenize (EOS between documents) and pack every split into `block_size` blocks."""
    raw = load_raw_datasets(cfg, seed)
    tokenized = raw.map(
        tokenize_documents,
        batched=True,
        num_proc=cfg.num_proc,
        remove_columns=raw["train"].column_names,
        fn_kwargs={"tokenizer": tokenizer, "text_column": cfg.text_column},
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
        fn_kwargs={"block_size": cfg.block_size},
        desc=f"packing into blocks of {cfg.block_size}",
    )
    return LMData(blocks=blocks, bytes_per_token=bytes_per_token)
