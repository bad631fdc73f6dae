"""The run directory contract: who may write into `output_dir`, and whether a run resumes.

A directory is a run of this package only if it holds the marker `run.json`, written when the run
directory is created. Only such a directory is ever resumed or, with `--overwrite`, emptied; any other
non-empty directory is refused, whatever files it holds (a `config.yaml` proves nothing).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import yaml

from pipelines.config import RunConfig, save_config
from pipelines.dir_lock import LOCK_FILE
from pipelines.disk import check_free_space, check_writable, directory_size
from pipelines.errors import PipelineError
from pipelines.training.checkpoint import list_checkpoints

MARKER = "run.json"
PACKAGE = "pipelines"
METRICS = "metrics.jsonl"
MIN_FREE_BYTES = 1 << 20
"""Free space a fresh run needs before its model exists (a full disk); the model's own needs are checked later."""


def check_output_dir(cfg: RunConfig, overwrite: bool = False) -> bool:
    """Read-only check before any work: True if the directory holds this same run, unfinished (resume).

    A directory that holds a different run or a finished run is refused unless `overwrite` is set; one
    that holds no run of this package (no `run.json`) is refused even then. The directory must also be
    writable and its disk must have room for the next checkpoint.
    """
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise PipelineError(f"output_dir {out} is a file")
    check_writable(out, "output_dir")
    resume = _holds_same_run(cfg, out, overwrite)
    checkpoints = list_checkpoints(out / "checkpoints") if resume else []
    needed = max(MIN_FREE_BYTES, directory_size(checkpoints[-1]) if checkpoints else 0)
    check_free_space(out, needed, "the next checkpoint" if checkpoints else "a new run")
    return resume


def _holds_same_run(cfg: RunConfig, out: Path, overwrite: bool) -> bool:
    if not _entries(out):
        return False
    if read_marker(out) is None:  # even with --overwrite: never delete a directory that is not provably ours
        raise PipelineError(
            f"output_dir {out} is not empty and holds no run of this package (no {MARKER}); "
            "it is never replaced, even with --overwrite: choose another output_dir"
        )
    if overwrite:
        return False
    saved = out / "config.yaml"
    try:
        previous = yaml.safe_load(saved.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        previous = None
    if not isinstance(previous, dict):
        raise PipelineError(f"{saved} is missing or unreadable; pass --overwrite to start this run again")
    changed = sorted(_diff_keys(previous, cfg.to_dict()))
    extended = bool(changed) and all(_raised(previous, cfg.to_dict(), key) for key in changed)
    if changed and not extended:
        raise PipelineError(
            f"output_dir {out} holds a different run (differs in: {', '.join(changed)}); "
            "choose another output_dir, or pass --overwrite to replace it"
        )
    if (out / "final").exists() and not extended:
        raise PipelineError(
            f"output_dir {out} already holds this finished run; raise train.max_steps to train it on, "
            "or pass --overwrite to train it again"
        )
    if extended and not list_checkpoints(out / "checkpoints"):
        raise PipelineError(f"output_dir {out} holds no checkpoint to train on from; pass --overwrite to start again")
    check_metrics_log(out / METRICS)
    return True


EXTENDABLE = ("train.max_steps", "train.max_runtime")
"""Keys whose raise continues a run (finished or not) from its newest checkpoint instead of making a new one."""


def _raised(previous: dict, current: dict, key: str) -> bool:
    if key not in EXTENDABLE:
        return False
    section, name = key.split(".")
    old, new = previous.get(section, {}).get(name), current[section][name]
    return new is None or (old is not None and new > old)  # no limit any more counts as raised


def check_metrics_log(path: Path) -> None:
    """A resumed run rewrites `metrics.jsonl` from its records; refuse one whose records cannot be read.

    Only the last line may be cut off (a hard kill in the middle of a write); resume drops it.
    """
    if not path.exists():
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path} cannot be read ({err}); repair or remove it to resume") from None
    for number, line in enumerate(lines[:-1], start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
            raise PipelineError(f"{path} line {number} is not a metrics record; repair or remove that line to resume")


def read_marker(out: Path) -> dict | None:
    """The run marker of `out`; None when there is none. A marker this package did not write is an error."""
    path = Path(out) / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path} is unreadable ({err}); the directory is not treated as a run") from None
    if not isinstance(marker, dict) or marker.get("package") != PACKAGE or not marker.get("run_id"):
        raise PipelineError(f"{path} was not written by this package; the directory is not treated as a run")
    return marker


def init_output_dir(cfg: RunConfig, overwrite: bool = False) -> Path:
    """Create (or, with `overwrite`, empty) the run directory, mark it as a run, and write the resolved config.

    Called under the directory's lock, which is why the lock file survives the emptying.
    """
    out = Path(cfg.output_dir)
    if overwrite and _entries(out):
        if read_marker(out) is None:  # check_output_dir refused it already; never delete what is not ours
            raise PipelineError(f"output_dir {out} holds no run of this package; it is not replaced")
        _empty(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        _write_marker(out)
    save_config(cfg, out / "config.yaml")
    return out


def _write_marker(out: Path) -> None:
    marker = {
        "package": PACKAGE,
        "version": package_version(),
        "run_id": uuid.uuid4().hex,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = out / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, out / MARKER)  # atomic: a marker is never half-written


def package_version() -> str:
    """The installed version of this package (the source tree's when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        from pipelines import __version__

        return __version__


def _entries(out: Path) -> list[Path]:
    """What the directory holds, apart from the lock file of whoever is using it."""
    return [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []


def _empty(out: Path) -> None:
    for entry in _entries(out):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()  # a symlink goes, never what it points to


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            keys.append(f"{prefix}{key}")
    return keys
