"""Resumable checkpoints that a crash mid-save cannot corrupt.

Each checkpoint is written by `accelerator.save_state` into `step-N.tmp/` and renamed to `step-N/`
only once complete (rename is atomic), so an interrupted save leaves the previous good checkpoint
untouched; leftover `.tmp` directories are ignored and cleaned up. A save that fails (a full disk)
removes its `.tmp` directory and says how much space it needed. `manifest.json` records every file's
size, so resume can tell a damaged checkpoint from a whole one and fall back to the one before it.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import torch
from accelerate.logging import get_logger

from pipelines.disk import directory_size, format_bytes, free_bytes
from pipelines.errors import PipelineError

logger = get_logger(__name__)

STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
ADAM_FACTOR = 3
"""A checkpoint holds the weights and Adam's two moments: about three times the weights' bytes."""


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator, root: Path, step: int, state: dict, keep: int, extra: dict | None = None) -> Path:
    """Save model, optimizer, scheduler, RNG and sampler state plus `state` (step, tokens, ...).

    `extra` maps file names to objects saved beside them with `torch.save` (e.g. the best weights so far).
    A failed save (full disk, quota, I/O error) removes the partial checkpoint, leaves the earlier ones as
    they were, and raises a `PipelineError` that says how much space a checkpoint needs.
    """
    final = root / f"step-{step:08d}"
    tmp = root / f"{final.name}.tmp"
    needed = _expected_size(accelerator, root)  # measured before the partial files exist
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            for name, obj in (extra or {}).items():
                torch.save(obj, tmp / name)
            sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / MANIFEST).write_text(json.dumps(sizes, indent=2))
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))  # last: its presence marks a whole checkpoint
    except Exception as err:  # noqa: BLE001 - a full disk surfaces as OSError, RuntimeError or SafetensorError
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise PipelineError(_save_failed(final, err, needed)) from None
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob("step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def estimated_checkpoint_bytes(model: torch.nn.Module) -> int:
    """Disk space one checkpoint of `model` takes under Adam: its parameter bytes, three times over."""
    unique = {id(p): p for p in model.parameters()}  # tied weights are stored once
    return ADAM_FACTOR * sum(p.numel() * p.element_size() for p in unique.values())


def _expected_size(accelerator, root: Path) -> int:
    """The previous checkpoint's size, or an estimate from the model's parameters before the first save."""
    previous = list_checkpoints(root)
    if previous:
        return directory_size(previous[-1])
    # `_models` is where accelerate keeps the prepared models; there is no public accessor.
    return sum(estimated_checkpoint_bytes(accelerator.unwrap_model(m)) for m in getattr(accelerator, "_models", []))


def _save_failed(final: Path, err: Exception, needed: int) -> str:
    previous = list_checkpoints(final.parent)
    kept = f"checkpoint {previous[-1].name} is intact" if previous else "no earlier checkpoint exists"
    return (
        f"could not save checkpoint {final}: {_first_line(err)}; a checkpoint needs about {format_bytes(needed)} "
        f"and {format_bytes(free_bytes(final.parent))} is free; {kept}. Free some space and run the same command "
        "to resume"
    )


def load_checkpoint(accelerator, path: Path) -> tuple[dict, dict]:
    """Restore everything `save_checkpoint` saved; returns the trainer state and the `extra` objects."""
    accelerator.load_state(str(path))
    extra = {p.name: torch.load(p, weights_only=True) for p in path.glob("*.extra.pt")}
    return json.loads((path / STATE_FILE).read_text()), extra


def load_newest_checkpoint(accelerator, checkpoints: list[Path]) -> tuple[Path, dict, dict]:
    """Restore the newest of `checkpoints` (oldest first) that loads; returns its path, state and extras.

    A damaged checkpoint (a truncated or missing file) is skipped with a warning that names it, and the
    one before it is tried; when none loads, a `PipelineError` says what is wrong with each.
    """
    problems = []
    for path in reversed(checkpoints):
        problem = checkpoint_problem(path)
        if problem is None:
            try:
                return (path, *load_checkpoint(accelerator, path))
            except Exception as err:  # noqa: BLE001 - files that pass the checks can still fail to deserialise
                problem = _first_line(err)
        logger.warning(f"checkpoint {path} is damaged ({problem}); trying the one before it", main_process_only=True)
        problems.append(f"{path.name}: {problem}")
    raise PipelineError(
        f"no checkpoint in {checkpoints[0].parent} can be restored ({'; '.join(problems)}); "
        "pass --overwrite to start the run again"
    )


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with the files of checkpoint `path` (missing, truncated, unreadable), or None."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        return f"{STATE_FILE} is unreadable: {err}"
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        return f"{STATE_FILE} holds no step"
    try:  # checkpoints saved before manifests existed have none: their files are only checked below
        sizes = json.loads((path / MANIFEST).read_text()) if (path / MANIFEST).exists() else {}
    except (OSError, ValueError) as err:
        return f"{MANIFEST} is unreadable: {err}"
    for name, size in sizes.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} were written"
    for file in sorted(path.iterdir()):
        problem = _file_problem(file)
        if problem:
            return f"{file.name} {problem}"
    return None


def _file_problem(file: Path) -> str | None:
    """A truncated safetensors or torch zip file, detected from its header or central directory alone."""
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as err:  # noqa: BLE001 - SafetensorError, OSError, ...
            return f"is unreadable: {_first_line(err)}"
    elif file.suffix in (".bin", ".pt", ".pkl"):
        with file.open("rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format; older savers wrote plain pickles
        if zipped and not zipfile.is_zipfile(file):
            return "is truncated (its zip directory is missing)"
    return None


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
