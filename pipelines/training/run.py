"""The part every run kind shares: preflight, run directory, the loop, export and results.

A run kind (pretrain, finetune) only says how to build its `Task`; everything here is the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import RunConfig
from pipelines.training.export import export_final
from pipelines.training.loop import EvaluateFn, build_accelerator, train
from pipelines.training.run_dir import check_output_dir, init_output_dir


@dataclass
class Task:
    """Everything the loop needs for one run, built from the config by a run kind."""

    model: object
    tokenizer: object
    train_dataset: object
    eval_dataset: object | None
    train_collator: Callable
    eval_collator: Callable
    evaluate: EvaluateFn
    model_card: Callable[[dict], str]
    """Markdown for `final/README.md`, given the results."""
    results: dict = field(default_factory=dict)
    """Extra figures for `eval_results.json` (bytes per token, label names, ...)."""
    generation: dict = field(default_factory=dict)
    """Generation defaults saved with the export (e.g. greedy, beams), over the sampling defaults."""
    export_files: dict[str, str] = field(default_factory=dict)
    """Extra files for `final/` (name → text), e.g. the prompt templates."""


def run_task(cfg: RunConfig, build_task: Callable, overwrite: bool = False) -> dict:
    """Build the task (every input check happens here, before any file is written), train, export."""
    resume = check_output_dir(cfg, overwrite)
    accelerator = build_accelerator(cfg.train, cfg.output_dir, cfg.seed)
    task = build_task(cfg, accelerator)
    if accelerator.is_main_process:
        init_output_dir(cfg, overwrite)
    accelerator.wait_for_everyone()

    results, model = train(
        cfg, accelerator, task.model, task.train_dataset, task.eval_dataset,
        task.train_collator, task.eval_collator, task.evaluate, resume,
    )  # fmt: skip
    # Counted on the unprepared model: ZeRO-3 leaves placeholders in the prepared one.
    results |= {"parameters": sum(p.numel() for p in task.model.parameters()), **task.results}
    # The prepared model: ZeRO-3 and FSDP gather full weights through their wrappers.
    export_final(accelerator, model, task.tokenizer, cfg.output_dir, task.model_card(results), task.generation,
                 task.export_files)  # fmt: skip
    if accelerator.is_main_process:
        (Path(cfg.output_dir) / "eval_results.json").write_text(json.dumps(results, indent=2))
    accelerator.end_training()  # closes trackers and the process group: last
    return results
