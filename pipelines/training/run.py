"""The part every run kind shares: preflight, run directory, the loop, export and results.

A run kind (pretrain, finetune) only says how to build its `Task`; everything here is the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pipelines.config import RunConfig
from pipelines.dir_lock import lock_directory
from pipelines.disk import check_free_space
from pipelines.errors import PipelineError
from pipelines.objectives import training_loss
from pipelines.training.checkpoint import ADAM_FACTOR, estimated_checkpoint_bytes
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
    """Build the task (every input check happens here, before any file is written), train, export.

    The run holds an exclusive lock on `output_dir` from before the task is built until it returns or fails,
    so a second run into the same directory is refused instead of interleaving with this one.
    """
    check_output_dir(cfg, overwrite)  # every process, before any work: a refused directory costs nothing
    accelerator = build_accelerator(cfg.train, cfg.output_dir, cfg.seed)
    with ExitStack() as held:
        resume = _on_main_process(accelerator, partial(_claim_output_dir, held, cfg, overwrite))
        task = build_task(cfg, accelerator)
        check_free_space(Path(cfg.output_dir), _space_needed(task.model), "a checkpoint and the export of this model")
        if accelerator.is_main_process:
            init_output_dir(cfg, overwrite)
        accelerator.wait_for_everyone()

        results, model = train(
            cfg, accelerator, task.model, task.train_dataset, task.eval_dataset,
            task.train_collator, task.eval_collator, task.evaluate, resume, training_loss(cfg),
        )  # fmt: skip
        # Counted on the unprepared model: ZeRO-3 leaves placeholders in the prepared one.
        parameters = list(task.model.parameters())
        trainable = sum(p.numel() for p in parameters if p.requires_grad)  # fewer than all with LoRA
        results |= {"parameters": sum(p.numel() for p in parameters), "trainable_parameters": trainable, **task.results}
        # The prepared model: ZeRO-3 and FSDP gather full weights through their wrappers.
        export_final(accelerator, model, task.tokenizer, cfg.output_dir, task.model_card(results), task.generation,
                     task.export_files)  # fmt: skip
        if accelerator.is_main_process:
            (Path(cfg.output_dir) / "eval_results.json").write_text(json.dumps(results, indent=2))
        accelerator.end_training()  # closes trackers and the process group: last
    return results


def _claim_output_dir(held: ExitStack, cfg: RunConfig, overwrite: bool) -> bool:
    """Lock `output_dir` for the rest of the run and check it again under the lock (another run may have
    written to it since the first check); True to resume."""
    held.enter_context(lock_directory(cfg.output_dir, "output_dir"))
    return check_output_dir(cfg, overwrite)


def _on_main_process(accelerator, fn: Callable):
    """Run `fn` on the main process only (the lock has one holder); every process gets its result, or raises
    its `PipelineError`, so no process waits for one that has already given up."""
    outcome = (None, None)
    if accelerator.is_main_process:
        try:
            outcome = (fn(), None)
        except PipelineError as err:
            outcome = (None, str(err))
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        outcome = broadcast_object_list([outcome])[0]
    value, error = outcome
    if error is not None:
        raise PipelineError(error)
    return value


def _space_needed(model) -> int:
    """One more checkpoint (written before the oldest is deleted) and the export's weights."""
    return estimated_checkpoint_bytes(model) * (ADAM_FACTOR + 1) // ADAM_FACTOR
