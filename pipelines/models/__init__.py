"""Model builders, looked up by `model.arch`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.config import ModelConfig
from pipelines.errors import PipelineError
from pipelines.registry import Registry


@dataclass(frozen=True)
class ModelShape:
    """What a builder needs beyond the model config: derived from the tokenizer and the data."""

    vocab_size: int
    max_positions: int
    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: the family decides which objectives can train it."""

    family: str
    build: Callable[[ModelConfig, ModelShape], object]


MODELS = Registry("model architecture")


def model_shape(cfg: ModelConfig, tokenizer, block_size: int) -> ModelShape:
    """Vocabulary and positions from the tokenizer and block size; an explicit size that cannot fit is an error."""
    needed = len(tokenizer)
    vocab_size = cfg.vocab_size if cfg.vocab_size is not None else -(-needed // 64) * 64
    if vocab_size < needed:
        raise PipelineError(
            f"model.vocab_size is {vocab_size} but the tokenizer has {needed} tokens; "
            "raise model.vocab_size or leave it unset to follow the tokenizer"
        )
    return ModelShape(
        vocab_size=vocab_size,
        max_positions=cfg.max_position_embeddings or block_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(cfg: ModelConfig, shape: ModelShape):
    """A freshly initialised model of architecture `cfg.arch`."""
    return MODELS.get(cfg.arch).build(cfg, shape)


# Registration happens on import of the modules that define builders.
from pipelines.models import transformer  # noqa: E402, F401
