"""`pretrain`: a language-modelling objective on packed text, or text-to-text pairs, from scratch or on from an
export (see `pipelines.tasks`)."""

from __future__ import annotations

from pipelines.config import RunConfig
from pipelines.tasks import run_command


def pretrain(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Pretrain a model (from scratch, or on from `model.init_from`); returns `eval_results.json`'s contents."""
    return run_command("pretrain", cfg, overwrite)
