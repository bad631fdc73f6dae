"""Resumable checkpoints that a crash mid-save cannot corrupt.

Each checkpoint is written by `accelerator.save_state` into `step-N.tmp/` and renamed to `step-N/`
only once complete (rename is atomic), so an interrupted save leaves the previous good checkpoint
untouched; leftover `.tmp` directories are ignored and cleaned up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

STATE_FILE = "trainer_state.json"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator, root: Path, step: int, state: dict, keep: int, extra: dict | None = None) -> Path:
    """Save model, optimizer, scheduler, RNG and sampler state plus `state` (step, tokens, ...).

    `extra` maps file names to objects saved beside them with `torch.save` (e.g. the best weights so far).
    """
    final = root / f"step-{step:08d}"
    tmp = root / f"{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for name, obj in (extra or {}).items():
            torch.save(obj, tmp / name)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob("step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> tuple[dict, dict]:
    """Restore everything `save_checkpoint` saved; returns the trainer state and the `extra` objects."""
    accelerator.load_state(str(path))
    extra = {p.name: torch.load(p, weights_only=True) for p in path.glob("*.extra.pt")}
    return json.loads((path / STATE_FILE).read_text()), extra
