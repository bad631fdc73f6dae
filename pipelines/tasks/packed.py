"""Packed-text tasks (causal LM, masked LM, span corruption): tokenizer → packed blocks → model → objective."""

from __future__ import annotations

from functools import partial

from transformers import set_seed

from pipelines.config import RunConfig
from pipelines.data.prepare import prepare_lm_data
from pipelines.evaluation.lm import bits_per_byte, evaluate_lm
from pipelines.models import init_model, resolve_export
from pipelines.objectives import OBJECTIVES, auto_class_for
from pipelines.tokenization import load_tokenizer
from pipelines.training.export import model_card
from pipelines.training.run import Task


def build_packed_task(cfg: RunConfig, accelerator) -> Task:
    """Model, packed data, collators and evaluator for a language-modelling objective."""
    objective = OBJECTIVES.get(cfg.objective.name)
    export = resolve_export(cfg.model.init_from) if cfg.model.init_from else None
    tokenizer = load_tokenizer(export or cfg.tokenizer.path)
    set_seed(cfg.seed)
    auto_class = auto_class_for(objective)
    model = init_model(cfg.model, export, auto_class, tokenizer, cfg.data.block_size)
    packing = objective.packing(tokenizer, cfg)
    with accelerator.main_process_first():  # the main process fills the datasets cache; the others read it
        data = prepare_lm_data(cfg.data, cfg.seed, tokenizer, packing)

    bytes_per_token = data.bytes_per_token.get("validation", data.bytes_per_token.get("train"))
    evaluate = partial(
        _evaluate, accelerator=accelerator, shift=objective.shift_labels, max_batches=cfg.train.eval_max_batches,
        bytes_per_token=bytes_per_token if objective.scores_all_tokens else None,  # None: not measurable
    )  # fmt: skip
    return Task(
        model=model,
        tokenizer=tokenizer,
        train_dataset=data.blocks["train"],
        eval_dataset=data.blocks.get("validation"),
        train_collator=objective.build_collator(tokenizer, cfg.objective),
        eval_collator=objective.build_collator(tokenizer, cfg.objective, eval_seed=cfg.seed),
        evaluate=evaluate,
        model_card=partial(_model_card, cfg, auto_class.__name__),
        results={"bytes_per_token": bytes_per_token} if bytes_per_token else {},
    )


def _evaluate(model, loader, accelerator, shift, max_batches, bytes_per_token) -> dict:
    metrics = evaluate_lm(model, loader, accelerator, shift_labels=shift, max_batches=max_batches)
    if bytes_per_token is not None:  # only when every token is a target (not for masked LM)
        metrics["bits_per_byte"] = bits_per_byte(metrics["loss"], bytes_per_token)
    return metrics


def _model_card(cfg: RunConfig, auto_class: str, results: dict) -> str:
    source = cfg.data.source if cfg.data.source == "builtin" else f"{cfg.data.source}: `{cfg.data.path}`"
    about = " (Python standard-library documentation)" if cfg.data.source == "builtin" else ""
    facts = [f"**Training data:** {source}{about}",
             f"**Shape:** {cfg.model.num_layers} layers, hidden {cfg.model.hidden_size}, {cfg.model.num_heads} heads, "
             f"context {cfg.data.block_size}"]  # fmt: skip
    summary = (
        f"A `{cfg.model.arch}` model pretrained with the `{cfg.objective.name}` objective by the `pipelines` package."
    )
    return model_card(cfg, summary, facts, f"Load it with `{auto_class}.from_pretrained(...)` and `AutoTokenizer`.",
                      results)  # fmt: skip
