"""Transformer families as `transformers` configs, so exports load with the Auto classes."""

from __future__ import annotations

from transformers import BertConfig, GPT2Config, LlamaConfig, ModernBertConfig, Qwen3Config, T5Config

from pipelines.config import ConfigError, ModelConfig
from pipelines.models import MODELS, ModelShape, ModelSpec


def _special_ids(shape: ModelShape) -> dict[str, int | None]:
    return {"bos_token_id": shape.bos_token_id, "eos_token_id": shape.eos_token_id, "pad_token_id": shape.pad_token_id}


def _gated_width(cfg: ModelConfig) -> int:
    """A gated MLP (SwiGLU, GeGLU) has three matrices, so a width of 8/3·d (rounded up to a multiple of 64) keeps
    the parameter count of a plain 4·d MLP."""
    return cfg.intermediate_size or 64 * -(-(8 * cfg.hidden_size // 3) // 64)


def gpt2_config(cfg: ModelConfig, shape: ModelShape) -> GPT2Config:
    """GPT-2: learned positions, pre-LayerNorm blocks, GELU MLP."""
    return GPT2Config(
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


def _llama_fields(cfg: ModelConfig, shape: ModelShape) -> dict:
    """The fields Llama and Qwen3 configs share."""
    return dict(
        vocab_size=shape.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=_gated_width(cfg),
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=shape.max_positions,
        attention_dropout=cfg.dropout,
        tie_word_embeddings=cfg.tie_word_embeddings,
        **_special_ids(shape),
    )


def llama_config(cfg: ModelConfig, shape: ModelShape) -> LlamaConfig:
    """Llama: rotary positions, RMSNorm, SwiGLU MLP, no biases."""
    return LlamaConfig(**_llama_fields(cfg, shape))


def qwen3_config(cfg: ModelConfig, shape: ModelShape) -> Qwen3Config:
    """Qwen3: Llama blocks plus RMSNorm on each head's queries and keys (QK-norm), which keeps attention logits
    bounded so a higher learning rate stays stable: on tinyshakespeare, Muon at 2e-2 beat Llama's best (1e-2)
    by 0.03 bits per byte in 95 s (docs/benchmarks.md, "Third sweep")."""
    # head_dim: Qwen3's default is 128 whatever the width
    return Qwen3Config(**_llama_fields(cfg, shape), head_dim=cfg.hidden_size // cfg.num_heads)


def bert_config(cfg: ModelConfig, shape: ModelShape) -> BertConfig:
    """BERT: bidirectional post-LayerNorm encoder with learned positions and two segment types."""
    return BertConfig(
        vocab_size=shape.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=shape.max_positions,
        type_vocab_size=2,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=shape.pad_token_id,
    )


def modernbert_config(cfg: ModelConfig, shape: ModelShape) -> ModernBertConfig:
    """ModernBERT: pre-norm encoder with rotary positions, GeGLU MLP, no biases, global attention in every layer
    (ModernBERT's sliding windows only pay off on long inputs). A classifier reads the mean of the token states:
    masked-LM pretraining never trains the [CLS] state, and on 500 SST-2 labels mean pooling scored 63.7 against
    59.3 for [CLS] (README, "Does pretraining pay off")."""
    return ModernBertConfig(
        vocab_size=shape.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=_gated_width(cfg),
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        max_position_embeddings=shape.max_positions,
        layer_types=["full_attention"] * cfg.num_layers,
        attention_dropout=cfg.dropout,
        embedding_dropout=cfg.dropout,
        mlp_dropout=cfg.dropout,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=shape.pad_token_id,
        bos_token_id=shape.bos_token_id,
        eos_token_id=shape.eos_token_id,
        cls_token_id=shape.bos_token_id,
        sep_token_id=shape.eos_token_id,
        classifier_pooling="mean",
    )


def t5_config(cfg: ModelConfig, shape: ModelShape) -> T5Config:
    """T5 v1.1: encoder-decoder, relative position buckets (no position table), gated-GELU MLP.

    transformers 5 always ties T5's output layer to its embeddings (`tie_word_embeddings` only decides whether
    decoder outputs are scaled by d^-1/2), so the head is tied and scaled: unscaled, the initial logits have
    std √d and the loss starts near 80 instead of ln V.
    """
    # d_ff = 2·d as in T5 v1.1 small (d_model 512, d_ff 1024); the gate makes the MLP three matrices.
    return T5Config(
        vocab_size=shape.vocab_size,
        d_model=cfg.hidden_size,
        d_kv=cfg.hidden_size // cfg.num_heads,
        d_ff=cfg.intermediate_size or 2 * cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_decoder_layers or cfg.num_layers,
        num_heads=cfg.num_heads,
        dropout_rate=cfg.dropout,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=True,
        pad_token_id=shape.pad_token_id,
        eos_token_id=shape.eos_token_id,
        decoder_start_token_id=shape.pad_token_id,  # T5 starts decoding from <pad>
    )


def check_heads(cfg: ModelConfig) -> None:
    """Attention splits the width evenly across heads."""
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"'model.num_heads' ({cfg.num_heads}) must divide 'model.hidden_size' ({cfg.hidden_size})")


def check_t5(cfg: ModelConfig) -> None:
    """Heads, and an untied head that transformers 5 cannot build for T5 (see `t5_config`)."""
    check_heads(cfg)
    if not cfg.tie_word_embeddings:
        raise ConfigError("'model.tie_word_embeddings' is false, but transformers 5 always ties T5's output layer to "
                          "its embeddings; remove the setting")  # fmt: skip


MODELS.register("gpt2", ModelSpec(family="causal", build_config=gpt2_config, check=check_heads))
MODELS.register("llama", ModelSpec("causal", llama_config, check=check_heads, residual_dropout=True))
MODELS.register("qwen3", ModelSpec("causal", qwen3_config, check=check_heads, residual_dropout=True))
MODELS.register("bert", ModelSpec(family="masked", build_config=bert_config, check=check_heads))
MODELS.register("modernbert", ModelSpec(family="masked", build_config=modernbert_config, check=check_heads))
MODELS.register("t5", ModelSpec(family="seq2seq", build_config=t5_config, check=check_t5))
