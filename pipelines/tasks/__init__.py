"""The three kinds of task, each built in one place, and the commands that train them.

An objective says which kind it is (`Objective.kind`): `packed` text (causal LM, masked LM, span corruption),
`labelled` examples (classification) or `text_to_text` pairs. `pretrain` and `finetune` differ only in which
kinds they accept.
"""

from __future__ import annotations

from collections.abc import Callable

from pipelines.config import RunConfig
from pipelines.errors import PipelineError
from pipelines.objectives import OBJECTIVES, check_compatible
from pipelines.tasks.labelled import build_labelled_task
from pipelines.tasks.packed import build_packed_task
from pipelines.tasks.text_to_text import build_text_to_text_task
from pipelines.training.run import Task, run_task

BUILDERS: dict[str, Callable[[RunConfig, object], Task]] = {
    "packed": build_packed_task,
    "labelled": build_labelled_task,
    "text_to_text": build_text_to_text_task,
}
COMMANDS = {"pretrain": ("packed", "text_to_text"), "finetune": ("labelled", "text_to_text")}
"""Command → the kinds of task it trains."""
WRONG_COMMAND = {"packed": "is a pretraining objective: use `pretrain`",
                 "labelled": "trains on labelled examples: use `finetune`"}  # fmt: skip


def build_task(cfg: RunConfig, accelerator) -> Task:
    """The run's `Task`, built by its objective's kind."""
    check_compatible(cfg)
    return BUILDERS[OBJECTIVES.get(cfg.objective.name).kind](cfg, accelerator)


def run_command(command: str, cfg: RunConfig, overwrite: bool = False) -> dict:
    """Train the run as `command` (`pretrain` or `finetune`); returns `eval_results.json`'s contents."""
    kind = OBJECTIVES.get(cfg.objective.name).kind
    if kind not in COMMANDS[command]:
        raise PipelineError(f"objective '{cfg.objective.name}' {WRONG_COMMAND[kind]}")
    if cfg.data.streaming and kind != "packed":  # examples are encoded, split and shuffled as one table
        raise PipelineError(f"data.streaming is for pretraining corpora; {kind.replace('_', '-')} examples are loaded "
                            "in memory: unset data.streaming")  # fmt: skip
    return run_task(cfg, build_task, overwrite)
