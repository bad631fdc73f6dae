"""The run directory contract: who may write into `output_dir`, and whether a run resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from pipelines.config import RunConfig, save_config
from pipelines.errors import PipelineError


def check_output_dir(cfg: RunConfig, overwrite: bool = False) -> bool:
    """Read-only check before any work: True if the directory holds this same run, unfinished (resume).

    A directory that holds a different run, a finished run, or unrelated files is refused unless
    `overwrite` is set; nothing is ever silently replaced.
    """
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise PipelineError(f"output_dir {out} is a file")
    if not out.exists() or not any(out.iterdir()):
        return False
    saved = out / "config.yaml"
    if not saved.is_file():  # even with --overwrite: never delete a directory that is not a run
        raise PipelineError(f"output_dir {out} is not empty and holds no run (no config.yaml); choose another")
    if overwrite:
        return False
    try:
        previous = yaml.safe_load(saved.read_text())
    except yaml.YAMLError:
        previous = None
    if not isinstance(previous, dict):
        raise PipelineError(f"{saved} is unreadable; pass --overwrite to start this run again")
    if previous != cfg.to_dict():
        changed = sorted(_diff_keys(previous, cfg.to_dict()))
        raise PipelineError(
            f"output_dir {out} holds a different run (differs in: {', '.join(changed)}); "
            "choose another output_dir, or pass --overwrite to replace it"
        )
    if (out / "final").exists():
        raise PipelineError(f"output_dir {out} already holds this finished run; pass --overwrite to train it again")
    return True


def init_output_dir(cfg: RunConfig, overwrite: bool = False) -> Path:
    """Create (or, with `overwrite`, empty) the run directory and write the resolved config."""
    out = Path(cfg.output_dir)
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    return out


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            keys.append(f"{prefix}{key}")
    return keys
