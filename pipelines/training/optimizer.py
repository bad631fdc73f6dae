"""AdamW with per-group learning rates and weight decay, built the same way for every architecture."""

from __future__ import annotations

import torch
from transformers import get_scheduler

from pipelines.config import OptimConfig
from pipelines.errors import PipelineError
from pipelines.models import lr_scales


def param_groups(model: torch.nn.Module, cfg: OptimConfig) -> list[dict]:
    """Four groups: the matrices, the token embedding table (with a tied output layer), the attention query
    weights, and vectors (biases, norm gains). Vectors are never decayed; the table and the queries get their own
    learning-rate multipliers (`optim.embedding_lr_scale`, `optim.query_lr_scale`, else the architecture's)."""
    params = [p for p in model.parameters() if p.requires_grad]
    arch = lr_scales(model)
    if cfg.query_lr_scale is not None and not arch.queries:
        raise PipelineError(f"optim.query_lr_scale is set but {type(model).__name__} has no separate query weights")
    query_scale = arch.query if cfg.query_lr_scale is None else cfg.query_lr_scale
    embedding_scale = arch.embedding if cfg.embedding_lr_scale is None else cfg.embedding_lr_scale
    embedding = _token_embedding(model)
    queries = {id(p) for p in arch.queries}
    special = queries | {id(embedding)}
    groups = [  # the plain matrices first: their rate is the one logged as `learning_rate`
        ([p for p in params if p.dim() >= 2 and id(p) not in special], 1.0, cfg.weight_decay),
        ([p for p in params if p is embedding], embedding_scale, cfg.weight_decay),
        ([p for p in params if id(p) in queries], query_scale, cfg.weight_decay),
        ([p for p in params if p.dim() < 2 and id(p) not in special], 1.0, 0.0),
    ]
    return [{"params": ps, "lr": cfg.learning_rate * scale, "weight_decay": decay} for ps, scale, decay in groups if ps]


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups`; the schedule scales every group's learning rate alike."""
    fused = torch.cuda.is_available() if cfg.fused is None else cfg.fused
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.learning_rate, betas=betas, eps=cfg.adam_epsilon,
                             fused=fused)  # fmt: skip


def build_scheduler(optimizer, cfg: OptimConfig, max_steps: int, num_processes: int):
    """The learning-rate schedule over `max_steps` optimizer steps (warmup, then `cfg.lr_scheduler_type`)."""
    # A prepared scheduler steps once per process per optimizer step, hence the factor.
    extra = None
    if cfg.lr_scheduler_type == "warmup_stable_decay":
        decay_steps = max(1, round(cfg.decay_fraction * max_steps))
        extra = {"num_decay_steps": decay_steps * num_processes, "decay_type": "1-sqrt"}
    return get_scheduler(
        cfg.lr_scheduler_type,
        optimizer,
        num_warmup_steps=cfg.warmup_steps * num_processes,
        num_training_steps=max_steps * num_processes,
        scheduler_specific_kwargs=extra,
    )


def _token_embedding(model: torch.nn.Module) -> torch.nn.Parameter | None:
    """The input token table, or None for a model that does not expose one."""
    try:
        return model.get_input_embeddings().weight
    except (AttributeError, NotImplementedError):
        return None
