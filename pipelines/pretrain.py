"""`pretrain`: tokenizer → data → model → objective → the shared loop → export. Reads like a recipe."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from transformers import set_seed

from pipelines.config import RunConfig
from pipelines.data.prepare import prepare_lm_data
from pipelines.evaluation.lm import bits_per_byte, evaluate_lm
from pipelines.models import build_model, model_shape
from pipelines.objectives import OBJECTIVES, check_compatible
from pipelines.tokenization import load_tokenizer
from pipelines.training.export import export_final
from pipelines.training.loop import build_accelerator, train
from pipelines.training.run_dir import check_output_dir, init_output_dir


def pretrain(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Pretrain a model from scratch; returns the contents of `eval_results.json`."""
    # Everything that can be wrong with the input is checked before a file is written.
    check_compatible(cfg)
    resume = check_output_dir(cfg, overwrite)
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    shape = model_shape(cfg.model, tokenizer, cfg.data.block_size)
    objective = OBJECTIVES.get(cfg.objective.name)

    accelerator = build_accelerator(cfg.train, cfg.output_dir, cfg.seed)
    with accelerator.main_process_first():
        data = prepare_lm_data(cfg.data, cfg.seed, tokenizer)
    set_seed(cfg.seed)
    model = build_model(cfg.model, shape)
    if accelerator.is_main_process:
        init_output_dir(cfg, overwrite and not resume)
    accelerator.wait_for_everyone()

    bytes_per_token = data.bytes_per_token.get("validation", 1.0)
    evaluate = partial(
        _evaluate,
        accelerator=accelerator,
        shift=objective.shift_labels,
        max_batches=cfg.train.eval_max_batches,
        bytes_per_token=bytes_per_token,
    )
    results = train(
        cfg,
        accelerator,
        model,
        data.blocks["train"],
        data.blocks.get("validation"),
        objective.build_collator(tokenizer),
        evaluate,
        resume,
    )
    results |= {
        "parameters": sum(p.numel() for p in model.parameters()),
        "bytes_per_token": bytes_per_token,
        "train_blocks": len(data.blocks["train"]),
    }
    export_final(accelerator, model, tokenizer, cfg.output_dir, _model_card(cfg, results))
    if accelerator.is_main_process:
        (Path(cfg.output_dir) / "eval_results.json").write_text(json.dumps(results, indent=2))
    accelerator.end_training()  # closes trackers and the process group: last
    return results


def _evaluate(model, loader, accelerator, shift, max_batches, bytes_per_token) -> dict:
    metrics = evaluate_lm(model, loader, accelerator, shift_labels=shift, max_batches=max_batches)
    return metrics | {"bits_per_byte": bits_per_byte(metrics["loss"], bytes_per_token)}


def _model_card(cfg: RunConfig, results: dict) -> str:
    source = cfg.data.source if cfg.data.source == "builtin" else f"{cfg.data.source}: `{cfg.data.path}`"
    lines = [
        f"# {Path(cfg.output_dir).name}",
        "",
        f"A `{cfg.model.arch}` model pretrained from scratch with the `{cfg.objective.name}` objective "
        "by the `pipelines` package.",
        "",
        f"- **Training data:** {source}"
        + (" (Python standard-library documentation)" if cfg.data.source == "builtin" else ""),
        f"- **Size:** {results['parameters']:,} parameters; {cfg.model.num_layers} layers, "
        f"hidden {cfg.model.hidden_size}, {cfg.model.num_heads} heads, context {cfg.data.block_size}",
        f"- **Training:** {results['step']} steps, {results['tokens_seen']:,} tokens, {results['train_runtime']:.0f} s",
    ]
    if "eval_loss" in results:
        lines.append(
            f"- **Validation:** loss {results['eval_loss']:.4f}, perplexity {results['eval_perplexity']:.2f}, "
            f"{results['eval_bits_per_byte']:.4f} bits per byte"
        )
    lines += ["", "Load it with `AutoModelForCausalLM.from_pretrained(...)` and `AutoTokenizer`.", ""]
    return "\n".join(lines)
