"""Text-to-text runs (`seq2seq` for T5, `instruct` for a causal LM): templated pairs, maybe a mixture with span
corruption → model → the shared run, evaluated by generation. Both `pretrain` and `finetune` train this kind."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from transformers import set_seed

from pipelines.config import RunConfig
from pipelines.data.text_to_text import prepare_text_to_text_data
from pipelines.errors import PipelineError
from pipelines.evaluation.seq2seq import evaluate_text_to_text, load_generation_metrics
from pipelines.models import check_model, init_model, resolve_export
from pipelines.objectives import OBJECTIVES, auto_class_for
from pipelines.objectives.instruct import CHAT_TEMPLATE
from pipelines.tokenization import load_tokenizer
from pipelines.training.export import model_card
from pipelines.training.run import Task

PROMPT_TEMPLATES = "prompt_templates.json"
"""Export file: source name → input template, for `generate --instruction/--input`."""


def build_text_to_text_task(cfg: RunConfig, accelerator) -> Task:
    """Model, encoded (and maybe mixed) examples, collator and generation evaluator."""
    objective = OBJECTIVES.get(cfg.objective.name)
    decoder_only = objective.shift_labels
    export = resolve_export(cfg.model.init_from) if cfg.model.init_from else None
    tokenizer = load_tokenizer(export or cfg.tokenizer.path)
    if decoder_only and tokenizer.chat_template is None:
        tokenizer.chat_template = CHAT_TEMPLATE  # saved with the export: pipelines format prompts the same way
    if not decoder_only and tokenizer("a")["input_ids"][-1:] != [tokenizer.eos_token_id]:
        raise PipelineError("an encoder-decoder needs a tokenizer that ends every input with EOS (kind `unigram`)")
    metrics = load_generation_metrics(cfg.objective.metrics or list(objective.default_metrics))
    check_model(cfg.model, export, auto_class_for(objective), tokenizer, cfg.data.block_size)
    span = OBJECTIVES.get("span").packing(tokenizer, cfg) if _has_span_source(cfg) and not decoder_only else None

    with accelerator.main_process_first():
        data = prepare_text_to_text_data(cfg, tokenizer, objective.encode_pairs, span)
    if data.validation is None:
        raise PipelineError("text-to-text runs need validation data: set data.validation_path or "
                            "data.validation_fraction")  # fmt: skip
    _report_truncation(data.counts, cfg, accelerator)
    set_seed(cfg.seed)
    model = init_model(cfg.model, export, auto_class_for(objective), tokenizer, cfg.data.block_size)
    out = Path(cfg.output_dir)
    # One set of decoding settings: evaluation generates with them, and the export keeps them as its defaults.
    generation = {"do_sample": False, "top_k": None, "num_beams": cfg.objective.num_beams,
                  "max_new_tokens": cfg.objective.max_new_tokens}  # fmt: skip
    if cfg.objective.no_repeat_ngram_size is not None:
        generation["no_repeat_ngram_size"] = cfg.objective.no_repeat_ngram_size
    evaluate = partial(
        evaluate_text_to_text, accelerator=accelerator, tokenizer=tokenizer, metrics=metrics,
        decoder_only=decoder_only, generation=generation, predictions_path=out / "predictions.jsonl",
        max_batches=cfg.train.eval_max_batches,
    )  # fmt: skip
    return Task(
        model=model,
        tokenizer=tokenizer,
        train_dataset=data.train,
        eval_dataset=data.validation,
        train_collator=objective.build_collator(tokenizer, cfg.objective),
        eval_collator=objective.build_collator(tokenizer, cfg.objective, eval_seed=cfg.seed),
        evaluate=evaluate,
        model_card=partial(_model_card, cfg, objective.auto_class, data.templates),
        results={"data": data.counts},
        generation=generation,
        export_files={PROMPT_TEMPLATES: json.dumps(data.templates, indent=2)},
    )


def _has_span_source(cfg: RunConfig) -> bool:
    return any(source.kind == "span_corruption" for source in cfg.data.mixture or [])


def _report_truncation(counts: dict[str, int], cfg: RunConfig, accelerator) -> None:
    """Say how many examples were cut (the counts also go to eval_results.json)."""
    decisions = {
        "truncated_inputs": f"inputs cut to data.block_size={cfg.data.block_size}",
        "truncated_targets": f"targets cut to objective.max_target_length={cfg.objective.max_target_length}",
        "dropped_empty_targets": "records dropped for an empty target (data.empty_targets=drop)",
    }
    for key, value in counts.items():
        name, split, what = key.rsplit("/", 2)
        if value and what in decisions and accelerator.is_main_process:
            print(f"{name}: {value} {split} {decisions[what]}", flush=True)


def _model_card(cfg: RunConfig, auto_class: str, templates: dict[str, str], results: dict) -> str:
    start = f"fine-tuned from `{cfg.model.init_from}`" if cfg.model.init_from else "trained from scratch"
    summary = f"A text-to-text `{cfg.model.arch}` model ({cfg.objective.name}) {start} by the `pipelines` package."
    facts = ["**Input templates:** " + "; ".join(f"{name}: `{t!r}`" for name, t in templates.items())]
    load = f"Load it with `{auto_class}.from_pretrained(...)` and `AutoTokenizer`, then `model.generate(...)`."
    return model_card(cfg, summary, facts, load, results)
