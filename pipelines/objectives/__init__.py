"""Objectives: how a batch is collated and labelled, which head trains, and which model families it serves."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.config import RunConfig
from pipelines.errors import PipelineError
from pipelines.registry import Registry


@dataclass(frozen=True)
class Packing:
    """How documents become fixed-length blocks: a separator after each document, tokens around each block."""

    separator_id: int
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    block_size: int | None = None
    """Tokens per packed block, prefix and suffix included (None: `data.block_size`; span corruption packs
    longer raw blocks that shrink to `data.block_size` when corrupted)."""


@dataclass(frozen=True)
class Objective:
    """A registry entry.

    `build_collator(tokenizer, cfg, eval_seed)` makes the batch function; with `eval_seed` set, any
    randomness (e.g. masking) is a function of the batch, so every evaluation scores the same targets.
    """

    kind: str
    """`packed` (trained on packed text), `labelled` (on labelled examples) or `text_to_text` (on pairs): which
    task builds the run (`pipelines.tasks`)."""
    families: tuple[str, ...]
    auto_class: str
    """Name of the `transformers` Auto class whose head this objective trains (e.g. AutoModelForCausalLM)."""
    build_collator: Callable
    shift_labels: bool = False
    """True when position t predicts label t+1 (causal LM); the evaluator must shift likewise."""
    scores_all_tokens: bool = False
    """True when every token is a target, so loss converts to bits per byte."""
    packing: Callable | None = None
    """`packing(tokenizer, cfg) -> Packing` for objectives trained on packed text; None for labelled examples."""
    encode_pairs: Callable | None = None
    """Text-to-text objectives: `encode_pairs(sources, targets, tokenizer, max_input_length, max_target_length)`
    → `input_ids`, `labels` and per-example `input_truncated` / `target_truncated` flags."""
    default_metrics: tuple[str, ...] = ()
    """Metrics reported when `objective.metrics` is unset."""


OBJECTIVES = Registry("objective")


def auto_class_for(objective: Objective):
    """The `transformers` Auto class the objective trains."""
    import transformers

    return getattr(transformers, objective.auto_class)


def check_compatible(cfg: RunConfig) -> None:
    """Refuse an objective/model pairing that cannot train, before any work starts."""
    from pipelines.models import MODELS, resolve_export

    objective = OBJECTIVES.get(cfg.objective.name)
    arch = cfg.model.arch
    if cfg.model.init_from is not None:  # the export's own architecture counts, when it is one we know
        try:
            arch = json.loads((resolve_export(cfg.model.init_from) / "config.json").read_text()).get("model_type")
        except PipelineError:
            arch = None  # a hub name, or a damaged export that loading will name
        if arch not in MODELS:
            return  # the head check in load_pretrained decides
    family = MODELS.get(arch).family
    if family not in objective.families:
        raise PipelineError(
            f"objective '{cfg.objective.name}' cannot train model.arch '{arch}' ({family} family); "
            f"it serves: {', '.join(objective.families)}"
        )


def training_loss(cfg: RunConfig) -> Callable | None:
    """The loss the loop trains on, from (model outputs, batch): None for the model's own; with
    `objective.label_smoothing`, transformers' `LabelSmoother` over the logits, shifted as the objective shifts
    its labels."""
    if not cfg.objective.label_smoothing:
        return None
    from transformers.trainer_pt_utils import LabelSmoother

    smoother = LabelSmoother(epsilon=cfg.objective.label_smoothing)
    shift = OBJECTIVES.get(cfg.objective.name).shift_labels
    return lambda outputs, batch: smoother(outputs, batch["labels"], shift_labels=shift)


# Registration order is the order configs list the valid names in.
from pipelines.objectives import clm, mlm, classification, seq2seq, instruct  # noqa: E402, F401, I001
