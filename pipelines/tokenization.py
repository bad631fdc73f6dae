"""Train a tokenizer per model family with `tokenizers`, save it so `AutoTokenizer` can load it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from pipelines.config import TokenizerConfig
from pipelines.errors import PipelineError
from pipelines.registry import Registry

TOKENIZER_KINDS = Registry("tokenizer kind")


@dataclass(frozen=True)
class TokenizerRecipe:
    """An untrained `tokenizers.Tokenizer`, its trainer, and the special-token roles for transformers."""

    tokenizer: Tokenizer
    trainer: trainers.Trainer
    special_tokens: dict[str, str]


@TOKENIZER_KINDS.register("byte_bpe")
def byte_bpe(cfg: TokenizerConfig) -> TokenizerRecipe:
    """GPT-2 style byte-level BPE: any byte string is encodable, so there is no unknown token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    roles = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "pad_token": "<|pad|>"}
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(dict.fromkeys(roles.values())),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    return TokenizerRecipe(tokenizer, trainer, roles)


def train_tokenizer(cfg: TokenizerConfig, dataset: Dataset, text_column: str) -> PreTrainedTokenizerFast:
    """Train on `dataset[text_column]`, streamed in batches so the corpus is never one list in memory."""
    recipe = TOKENIZER_KINDS.get(cfg.kind)(cfg)
    if cfg.max_training_documents is not None:
        dataset = dataset.select(range(min(cfg.max_training_documents, len(dataset))))
    recipe.tokenizer.train_from_iterator(
        _iter_text_batches(dataset, text_column), trainer=recipe.trainer, length=len(dataset)
    )
    return PreTrainedTokenizerFast(tokenizer_object=recipe.tokenizer, **recipe.special_tokens)


def _iter_text_batches(dataset: Dataset, text_column: str, batch_size: int = 1000) -> Iterator[list[str]]:
    for batch in dataset.iter(batch_size=batch_size):
        yield batch[text_column]


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a trained tokenizer directory, with a clear error if it is missing or incomplete."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise PipelineError(
            f"no tokenizer at {path} (expected {path / 'tokenizer.json'}); "
            "train one with `python -m pipelines train-tokenizer --config <same config>`"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.eos_token_id is None:
        raise PipelineError(f"the tokenizer at {path} has no EOS token, which packing needs between documents")
    return tokenizer
