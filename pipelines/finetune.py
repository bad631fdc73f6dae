"""`finetune`: an exported model (or a fresh one) → a classifier or a text-to-text model (see `pipelines.tasks`)."""

from __future__ import annotations

from pipelines.config import RunConfig
from pipelines.tasks import run_command


def finetune(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Fine-tune a classifier or a text-to-text model; returns `eval_results.json`'s contents."""
    return run_command("finetune", cfg, overwrite)
