"""Objectives: how a batch is collated and labelled, and which model families each one can train."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.config import RunConfig
from pipelines.errors import PipelineError
from pipelines.registry import Registry


@dataclass(frozen=True)
class Objective:
    """A registry entry: the collator factory, the families it serves, and how labels align with logits."""

    families: tuple[str, ...]
    build_collator: Callable
    shift_labels: bool
    """True when position t predicts label t+1 (causal LM); the evaluator must shift likewise."""


OBJECTIVES = Registry("objective")


def check_compatible(cfg: RunConfig) -> None:
    """Refuse an objective/model pairing that cannot train, before any work starts."""
    from pipelines.models import MODELS

    objective = OBJECTIVES.get(cfg.objective.name)
    family = MODELS.get(cfg.model.arch).family
    if family not in objective.families:
        raise PipelineError(
            f"objective '{cfg.objective.name}' cannot train model.arch '{cfg.model.arch}' ({family} family); "
            f"it serves: {', '.join(objective.families)}"
        )


from pipelines.objectives import clm  # noqa: E402, F401
