"""Sequence classification: one label per sentence or sentence pair; dynamic padding per batch."""

from __future__ import annotations

from transformers import DataCollatorWithPadding

from pipelines.objectives import OBJECTIVES, Objective


def build_cls_collator(tokenizer, cfg=None, eval_seed: int | None = None) -> DataCollatorWithPadding:
    """Pad each batch to its longest example (not to `block_size`): short sentences stay cheap."""
    return DataCollatorWithPadding(tokenizer)


OBJECTIVES.register(
    "cls",
    Objective(
        kind="labelled",
        families=("causal", "masked", "classifier"),
        auto_class="AutoModelForSequenceClassification",
        build_collator=build_cls_collator,
        default_metrics=("accuracy",),
    ),
)
