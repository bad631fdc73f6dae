"""Transformer families built from `transformers` configs, so exports load with the Auto classes."""

from __future__ import annotations

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from pipelines.config import ModelConfig
from pipelines.models import MODELS, ModelShape, ModelSpec


def _special_ids(shape: ModelShape) -> dict[str, int | None]:
    return {"bos_token_id": shape.bos_token_id, "eos_token_id": shape.eos_token_id, "pad_token_id": shape.pad_token_id}


def build_gpt2(cfg: ModelConfig, shape: ModelShape) -> GPT2LMHeadModel:
    """GPT-2: learned positions, pre-LayerNorm blocks, GELU MLP."""
    config = GPT2Config(
        vocab_size=shape.vocab_size,
        n_positions=shape.max_positions,
        n_embd=cfg.hidden_size,
        n_layer=cfg.num_layers,
        n_head=cfg.num_heads,
        n_inner=cfg.intermediate_size,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        tie_word_embeddings=cfg.tie_word_embeddings,
        **_special_ids(shape),
    )
    return GPT2LMHeadModel(config)


def build_llama(cfg: ModelConfig, shape: ModelShape) -> LlamaForCausalLM:
    """Llama: rotary positions, RMSNorm, SwiGLU MLP, no biases."""
    # SwiGLU has three matrices, so 8/3·d keeps the parameter count of a 4·d GELU MLP.
    intermediate = cfg.intermediate_size or 64 * -(-(8 * cfg.hidden_size // 3) // 64)
    config = LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=intermediate,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=shape.max_positions,
        attention_dropout=cfg.dropout,
        tie_word_embeddings=cfg.tie_word_embeddings,
        **_special_ids(shape),
    )
    return LlamaForCausalLM(config)


MODELS.register("gpt2", ModelSpec(family="causal", build=build_gpt2))
MODELS.register("llama", ModelSpec(family="causal", build=build_llama))
