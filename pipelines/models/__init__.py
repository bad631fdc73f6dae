"""Model builders, looked up by `model.arch`: each entry turns a `ModelConfig` into a `transformers` config.

The head comes from the objective's Auto class (causal LM, masked LM, sequence classification), so
one architecture entry serves pretraining and fine-tuning, and every export loads with that Auto class.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

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
    build_config: Callable[[ModelConfig, ModelShape], object]
    check: Callable[[ModelConfig], None] | None = None
    """Refuses, with a `ConfigError` when the config is read, model fields this architecture cannot build."""
    residual_dropout: bool = False
    """Whether `model.residual_dropout` applies: Llama-style blocks, whose attention and MLP output projections
    (`o_proj`, `down_proj`) have no dropout of their own."""


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


def build_model(cfg: ModelConfig, shape: ModelShape, auto_class, **config_updates):
    """A freshly initialised model of architecture `cfg.arch` with the head of `auto_class`."""
    config = _fresh_config(cfg, shape, auto_class)
    config.update(config_updates)
    return _training_hooks(auto_class.from_config(config, **attention(cfg)), cfg, shape.max_positions)


def _training_hooks(model, cfg: ModelConfig, positions: int):
    """What a model gets for training, fresh or loaded: rotary tables and `model.residual_dropout` (both act in
    training mode only, so evaluation and the export see the plain transformers model)."""
    if getattr(model, "loss_type", "") is None:
        # GPT-2's head class name matches no loss name, so each forward warns and falls back to the causal LM loss;
        # a compiled forward breaks its graph at that warning. Name the same loss at the start.
        model.loss_type = "ForCausalLM"
    return add_residual_dropout(tabulate_rotary(model, positions), cfg.residual_dropout)


def tabulate_rotary(model, positions: int):
    """Rotary angles' cos and sin read from tables made once, in training mode (Llama-style models).

    transformers computes them from the positions in every forward pass; compiled, inductor fuses that computation
    into each layer's query and key kernels, forward and backward, and evaluates cos and sin once per element of
    every batch row and head: 12% of a step of the benchmark's model (docs/benchmarks.md, "Seventeenth sweep").
    The tables hold the same values (computed by the same operations) for the first `positions` positions and are
    not saved; longer inputs, evaluation and generation use transformers' own computation."""
    for module in model.modules():
        if getattr(module, "rope_type", None) != "default" or not hasattr(module, "inv_freq"):
            continue
        angles = torch.arange(positions, dtype=torch.float)[:, None] * module.inv_freq.float()
        angles = torch.cat((angles, angles), dim=-1)
        module.register_buffer("cos_table", angles.cos() * module.attention_scaling, persistent=False)
        module.register_buffer("sin_table", angles.sin() * module.attention_scaling, persistent=False)
        module.register_forward_hook(_rotary_from_table, with_kwargs=True)
    return model


def _rotary_from_table(module: torch.nn.Module, args: tuple, kwargs: dict, output):
    x, position_ids = (*args, *kwargs.values())[:2]  # transformers passes them positionally or by keyword
    if not module.training or position_ids.shape[-1] > module.cos_table.shape[0]:
        return output
    return module.cos_table[position_ids].to(x.dtype), module.sin_table[position_ids].to(x.dtype)


def add_residual_dropout(model, p: float):
    """Drop each block's attention and MLP outputs with probability `p` before they join the residual stream.

    Forward hooks on the output projections, not new modules: the weights, the export and evaluation (the hooks
    act only in training mode) stay those of the plain transformers model."""
    if not p:
        return model
    projections = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in ("o_proj", "down_proj")]
    if not projections:
        raise PipelineError(f"model.residual_dropout needs Llama-style blocks (o_proj, down_proj); a "
                            f"'{model.config.model_type}' model has none")  # fmt: skip
    for module in projections:
        module.register_forward_hook(functools.partial(_drop_output, p))
    return model


def _drop_output(p: float, module: torch.nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    if not module.training:
        return output
    if output.device.type != "cpu":
        return F.dropout(output, p)
    return output * cpu_dropout_mask(output, p)


def cpu_dropout_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """`F.dropout`'s mask (0 or 1 / (1 - p), in `like`'s dtype) at a third of its cost on CPU.

    PyTorch's CPU Bernoulli sampler is slow: on the benchmark's model, dropping the six projections' outputs took
    13% of a bf16 step (7% with this mask; docs/benchmarks.md, "Dropout on CPU"). Here one 64-bit draw of the
    default generator gives four elements 15 uniform bits each, so `p` is rounded to a multiple of 1/32768."""
    n = like.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # the low 63 bits are uniform
    bits = draws.view(torch.int16)[:n].view(like.shape).bitwise_and_(0x7FFF)
    return (bits >= round(p * 2**15)).to(like.dtype).mul_(1 / (1 - p))


def attention(cfg: ModelConfig) -> dict:
    """The `attn_implementation` argument transformers' loaders take, where the config chooses one."""
    return {} if cfg.attn_implementation is None else {"attn_implementation": cfg.attn_implementation}


def _fresh_config(cfg: ModelConfig, shape: ModelShape, auto_class):
    config = MODELS.get(cfg.arch).build_config(cfg, shape)
    if type(config) not in auto_class._model_mapping:
        raise PipelineError(f"model.arch '{cfg.arch}' has no {auto_class.__name__} head")
    return config


def load_pretrained(path: str, auto_class, tokenizer, block_size: int, **config_updates):
    """A model initialised from an export (or hub name) with the head of `auto_class`; see `_pretrained_config`."""
    _pretrained_config(path, auto_class, tokenizer, block_size)
    try:
        return auto_class.from_pretrained(path, **config_updates)
    except Exception as err:  # noqa: BLE001 - damaged weights raise OSError, SafetensorError, RuntimeError, ...
        raise PipelineError(f"cannot load the model weights from {path}: {str(err).strip().splitlines()[0]}") from None


def _pretrained_config(path: str, auto_class, tokenizer, block_size: int):
    """The export's config, refused when its architecture has no such head, when the tokenizer overflows its
    vocabulary, or when its position table is shorter than `block_size`."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise PipelineError(f"cannot load a model from {path}: {str(err).splitlines()[0]}") from None
    if type(config) not in auto_class._model_mapping:
        raise PipelineError(f"{path} holds a '{config.model_type}' model, which has no {auto_class.__name__} head")
    if len(tokenizer) > config.vocab_size:
        raise PipelineError(
            f"the tokenizer has {len(tokenizer)} tokens but the model at {path} has only {config.vocab_size} "
            "embeddings; use the tokenizer the model was trained with"
        )
    positions = position_limit(config)
    if config.model_type != "t5" and positions is not None and block_size > positions:
        raise PipelineError(f"data.block_size is {block_size} but the model at {path} reads at most {positions} tokens")
    return config


def check_model(cfg: ModelConfig, export: Path | None, auto_class, tokenizer, block_size: int) -> None:
    """The checks `init_model` makes, without building the model: run kinds call it before any data work, so a
    mismatch is reported in seconds, not after the data is tokenised."""
    if export is not None:
        _pretrained_config(str(export), auto_class, tokenizer, block_size)
    else:
        _fresh_config(cfg, model_shape(cfg, tokenizer, block_size), auto_class)
    if cfg.lora is not None:
        from pipelines.models.lora import check_peft

        check_peft()


def position_limit(config) -> int | None:
    """Longest sequence a model's position table covers (GPT-2's `n_positions` maps to this name); None
    for models without one (T5's relative positions, LSTMs)."""
    return getattr(config, "max_position_embeddings", None)


def new_token_limit(config, prompt_length: int, wanted: int) -> int:
    """At most `wanted` new tokens, and never past the end of a decoder-only model's learned position table."""
    positions = position_limit(config)
    if positions is None or config.is_encoder_decoder:
        return wanted
    return min(wanted, positions - prompt_length)


def init_model(cfg: ModelConfig, export: Path | None, auto_class, tokenizer, block_size: int, **config_updates):
    """The run's starting model: loaded from `export` when fine-tuning or continuing, else built fresh."""
    if export is not None:
        model = load_pretrained(str(export), auto_class, tokenizer, block_size, **config_updates, **attention(cfg))
        if cfg.lora is not None:
            from pipelines.models.lora import add_lora

            model = add_lora(model, cfg.lora, auto_class)
        return _training_hooks(model, cfg, block_size)  # after LoRA: the adapters' output is dropped too
    model = build_model(cfg, model_shape(cfg, tokenizer, block_size), auto_class, **config_updates)
    if cfg.embeddings_from:
        copy_input_embeddings(resolve_export(cfg.embeddings_from), model, tokenizer)
    return model


def copy_input_embeddings(export: Path, model, tokenizer) -> None:
    """Start `model`'s token embeddings from another export's (same tokenizer, same width): a baseline then
    begins with what pretraining learned about words, and only its own layers start from scratch."""
    from transformers import AutoModel, AutoTokenizer

    if AutoTokenizer.from_pretrained(str(export)).get_vocab() != tokenizer.get_vocab():
        raise PipelineError(f"model.embeddings_from: {export} was trained with another tokenizer; its rows would not "
                            "match this run's tokens")  # fmt: skip
    source = AutoModel.from_pretrained(str(export)).get_input_embeddings().weight
    target = model.get_input_embeddings().weight
    num_tokens = len(tokenizer)
    if source.shape[0] < num_tokens or source.shape[1] != target.shape[1]:
        raise PipelineError(
            f"model.embeddings_from: {export} has {source.shape[0]} x {source.shape[1]} embeddings; this model needs "
            f"{num_tokens} tokens x {target.shape[1]} (set model.embedding_size and use the same tokenizer)"
        )
    with torch.no_grad():
        target[:num_tokens] = source[:num_tokens]


@dataclass(frozen=True)
class LrScales:
    """Learning-rate multipliers an architecture needs under Adam, whose step size ignores a weight's scale."""

    queries: list
    """The attention query matrices (t5, llama, qwen3, bert; GPT-2 fuses q, k and v into one matrix)."""
    query: float = 1.0
    """Multiplier for `queries`."""
    embedding: float = 1.0
    """Multiplier for the token embedding table (and an output layer tied to it)."""


def lr_scales(model) -> LrScales:
    """The architecture's own multipliers: 1 everywhere except T5.

    T5 sizes its initial weights for Adafactor, whose steps are relative to each weight's scale: its query
    weights start sqrt(d_kv) times smaller than k and v (attention's 1/sqrt(d_kv) is folded into them), its
    token table sqrt(d_model) times larger than the matrices (std 1 against d^-1/2). Adam's steps are the
    same size for all of them, so at one learning rate the queries move sqrt(d_kv) times too fast (attention
    saturates within a few hundred steps and the decoder stops reading the source) and the table too slowly.
    These multipliers give every tensor the relative step of an ordinary d^-1/2 matrix.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    suffixes = QUERY_WEIGHTS.get(model_type, ())
    queries = [p for name, p in model.named_parameters() if name.endswith(suffixes)] if suffixes else []
    if model_type == "t5":
        return LrScales(queries, query=config.d_kv**-0.5, embedding=config.d_model**0.5)
    return LrScales(queries)


QUERY_WEIGHTS = {
    "t5": ("SelfAttention.q.weight", "EncDecAttention.q.weight"),
    "llama": ("self_attn.q_proj.weight",),
    "qwen3": ("self_attn.q_proj.weight",),
    "bert": ("attention.self.query.weight",),
}
"""model_type → name suffixes of its attention query matrices."""


def resolve_export(path: str | Path) -> Path:
    """Accept a run directory (uses its `final/`) or an export directory itself."""
    path = Path(path)
    for candidate in (path / "final", path):
        if (candidate / "config.json").is_file():
            check_export_files(candidate)
            return candidate
    if not path.exists():
        raise PipelineError(f"no such directory: {path}")
    raise PipelineError(f"{path} holds no exported model (no config.json in it or in {path / 'final'})")


def check_export_files(export: Path) -> None:
    """Refuse an export with a damaged file (cut off by a crash, a full disk or a copy), naming the file.

    Reads every JSON file and the header of every safetensors file, which also checks that the file is as
    long as its header says; the weights themselves are not read.
    """
    from safetensors import safe_open

    from pipelines.tokenization import check_json_file

    remedy = "the export is damaged; export it again"
    for path in sorted(export.glob("*.json")):
        check_json_file(path, remedy)
    for path in sorted(export.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as err:  # noqa: BLE001 - SafetensorError, OSError, ...
            raise PipelineError(f"{path} is unreadable ({str(err).strip().splitlines()[0]}): {remedy}") from None


# Registration happens on import of the modules that define builders.
from pipelines.models import baselines, transformer  # noqa: E402, F401
