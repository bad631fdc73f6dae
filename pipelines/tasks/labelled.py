"""Labelled-example tasks (classification): an exported model (or a fresh one) → a classifier."""

from __future__ import annotations

from functools import partial

from transformers import set_seed

from pipelines.config import RunConfig
from pipelines.data.prepare import prepare_classification_data
from pipelines.errors import PipelineError
from pipelines.evaluation.classification import evaluate_classification, load_metrics
from pipelines.models import check_model, init_model, resolve_export
from pipelines.objectives import OBJECTIVES, auto_class_for
from pipelines.tokenization import append_eos_to_sequences, load_tokenizer
from pipelines.training.export import model_card
from pipelines.training.run import Task


def build_labelled_task(cfg: RunConfig, accelerator) -> Task:
    """Classifier, encoded examples, padding collator and metric evaluator."""
    objective = OBJECTIVES.get(cfg.objective.name)
    export = resolve_export(cfg.model.init_from) if cfg.model.init_from else None
    tokenizer = append_eos_to_sequences(load_tokenizer(export or cfg.tokenizer.path))
    if tokenizer.pad_token_id is None:
        raise PipelineError("the tokenizer has no pad token, which batching sentences of different lengths needs")
    metrics = load_metrics(cfg.objective.metrics or ["accuracy"])
    check_model(cfg.model, export, auto_class_for(objective), tokenizer, cfg.data.block_size)

    with accelerator.main_process_first():
        data = prepare_classification_data(cfg.data, cfg.seed, tokenizer)
    if "validation" not in data.examples:
        raise PipelineError("fine-tuning needs validation data: give data.validation_path or a validation_fraction")
    labels = {"num_labels": len(data.labels), "id2label": dict(enumerate(data.labels)),
              "label2id": {name: i for i, name in enumerate(data.labels)}}  # fmt: skip
    set_seed(cfg.seed)
    auto_class = auto_class_for(objective)
    model = init_model(cfg.model, export, auto_class, tokenizer, cfg.data.block_size, **labels)
    if getattr(model.config, "pad_token_id", None) is None:  # causal classifiers find the last token by padding
        model.config.pad_token_id = tokenizer.pad_token_id
    collator = objective.build_collator(tokenizer, cfg.objective)
    return Task(
        model=model,
        tokenizer=tokenizer,
        train_dataset=data.examples["train"],
        eval_dataset=data.examples["validation"],
        train_collator=collator,
        eval_collator=collator,
        evaluate=partial(
            evaluate_classification,
            accelerator=accelerator,
            metrics=metrics,
            num_labels=len(data.labels),
            max_batches=cfg.train.eval_max_batches,
        ),  # fmt: skip
        model_card=partial(_model_card, cfg, data.labels),
        results={"labels": data.labels, "train_examples": len(data.examples["train"])},
    )


def _model_card(cfg: RunConfig, labels: list[str], results: dict) -> str:
    start = f"fine-tuned from `{cfg.model.init_from}`" if cfg.model.init_from else "trained from scratch"
    pair = f", pair: `{cfg.data.text_pair_column}`" if cfg.data.text_pair_column else ""
    facts = [f"**Data:** `{cfg.data.path}` (text: `{cfg.data.text_column}`{pair}, label: `{cfg.data.label_column}`)",
             f"**Labels:** {', '.join(labels)}"]  # fmt: skip
    load = ('Load it with `AutoModelForSequenceClassification.from_pretrained(...)` or '
            '`pipeline("text-classification", model=...)`.')  # fmt: skip
    return model_card(cfg, f"A sequence classifier {start} by the `pipelines` package.", facts, load, results)
