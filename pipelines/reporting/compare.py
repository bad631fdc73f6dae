"""`compare`: tables and plots of finished runs, grouped by task so that only comparable runs share a table.

A task is (objective, data identity): validation figures of a classifier and a language model, or of
two data sets, measure different things and are never ranked against each other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pipelines.config import DataConfig, RunConfig, load_config
from pipelines.errors import PipelineError
from pipelines.evaluation import LOWER_IS_BETTER

# Metrics shown first, in this order; the first one that every run of a task has ranks the runs.
_TEXT_TO_TEXT = ("bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "chrf", "loss", "source_gap")
PREFERRED_METRICS = {
    "cls": ("accuracy", "f1", "f1_macro", "loss"),
    "clm": ("bits_per_byte", "loss", "perplexity", "token_accuracy"),
    "mlm": ("loss", "perplexity", "token_accuracy"),
    "span": ("loss", "perplexity", "token_accuracy", "source_gap"),
    "seq2seq": _TEXT_TO_TEXT,
    "instruct": _TEXT_TO_TEXT,
}
X_AXES = {"time": "wall time (s)", "flops": "training FLOPs"}
"""Plot kind (file name `<task>-vs-<kind>.png`) → x-axis label."""
OBJECTIVE_TITLES = {  # an objective missing here (or above) is titled by its name, its metrics in order
    "clm": "Causal language modelling",
    "mlm": "Masked language modelling",
    "cls": "Sequence classification",
    "span": "Span corruption",
    "seq2seq": "Text-to-text",
    "instruct": "Instruction tuning",
}
CONVENTIONS = (
    "Metrics are validation figures from each run's `eval_results.json`, shown as stored (fractions, not "
    "percentages) to 4 decimals; rows are ranked best first by the first metric column. Parameters and tokens "
    "use k/M/B (10³/10⁶/10⁹); training FLOPs = FLOPs per token × tokens seen; wall time is `train_runtime` "
    "(evaluation and checkpointing included); — marks a figure the run did not record."
)


@dataclass
class Run:
    """One finished run, as read from its directory."""

    name: str
    path: Path
    cfg: RunConfig
    results: dict
    """`eval_results.json`."""
    records: list[dict]
    """`metrics.jsonl`, one dict per line."""

    @property
    def metrics(self) -> dict[str, float]:
        """Final validation metrics without the `eval_` prefix; integer `eval_*` values are sample counts
        (`eval_tokens`, `eval_examples`), not scores."""
        return {
            k.removeprefix("eval_"): v
            for k, v in self.results.items()
            if k.startswith("eval_") and isinstance(v, float)
        }

    @property
    def arch(self) -> str:
        """The exported model's type: a run started from `model.init_from` keeps its config's default arch."""
        exported = self.path / "final" / "config.json"
        if not exported.is_file():
            return self.cfg.model.arch
        return json.loads(exported.read_text()).get("model_type", self.cfg.model.arch)

    @property
    def train_flops(self) -> float | None:
        """Training FLOPs; the loop writes 0 when it never measured FLOPs per token (e.g. resumed at the end)."""
        return self.results.get("train_flops") or None


def compare_runs(run_dirs: list[Path], out_dir: Path, strict: bool = False) -> dict:
    """Write `report.md`, `report.json` and per-task plots to `out_dir`; return what `report.json` holds.

    With `strict`, the runs must all belong to one task; otherwise each task gets its own section.
    """
    if not run_dirs:
        raise PipelineError("no run directories given")
    runs = [load_run(Path(d)) for d in run_dirs]
    names = [r.name for r in runs]
    for run in runs:  # two runs both called `run` in different parents: tell them apart by path
        if names.count(run.name) > 1:
            run.name = str(run.path)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(task_key(run.cfg), []).append(run)
    if strict and len(groups) > 1:
        found = "; ".join(f"{key} ({', '.join(r.name for r in members)})" for key, members in groups.items())
        raise PipelineError(f"expected runs of one task, found {len(groups)}: {found}")

    out_dir.mkdir(parents=True, exist_ok=True)
    slugs: set[str] = set()
    tasks = []
    for key, members in sorted(groups.items()):
        slug = _unique(re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-"), slugs)
        tasks.append(_task_report(key, slug, members, out_dir))
    report = {"generated": datetime.now().isoformat(timespec="seconds"), "conventions": CONVENTIONS, "tasks": tasks}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(_markdown(report))
    return report


def load_run(run_dir: Path) -> Run:
    """Read a finished run directory: its config, final results and metrics log."""
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir} is not a directory")
    if not (run_dir / "config.yaml").is_file():
        raise PipelineError(f"{run_dir} is not a run directory: it has no config.yaml")
    if not (run_dir / "eval_results.json").is_file():
        raise PipelineError(f"{run_dir} holds no finished run: it has no eval_results.json (still training?)")
    cfg = load_config(run_dir / "config.yaml")
    try:
        results = json.loads((run_dir / "eval_results.json").read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{run_dir / 'eval_results.json'} is not valid JSON: {err}") from None
    records = []
    log = run_dir / "metrics.jsonl"
    for line in log.read_text().splitlines() if log.is_file() else ():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut off by a hard kill
            continue
    return Run(run_dir.name, run_dir, cfg, results, records)


def task_key(cfg: RunConfig) -> str:
    """`<objective> on <data identity>`, e.g. `cls on files:data/sst2/train.tsv`."""
    return f"{cfg.objective.name} on {data_identity(cfg.data)}"


def data_identity(data: DataConfig) -> str:
    """Source and path as written in the config (plus what changes the labels or targets of the same files)."""
    if data.mixture is not None:
        return "mixture(" + " + ".join(data_identity(source.data) for source in data.mixture) + ")"
    identity = data.source + (f":{data.path}" if data.path else "")
    if data.name:  # a hub config, e.g. wikitext/wikitext-2-raw-v1
        identity += f"/{data.name}"
    if data.preprocess:  # the same TREC file is a 6-class or a 50-class task
        identity += f" [{data.preprocess}]"
    if data.target_template:  # the same parallel files translate en→de or de→en
        identity += f" → {data.target_template}"
    return identity


def _unique(slug: str, taken: set[str]) -> str:
    candidate, n = slug, 1
    while candidate in taken:
        n += 1
        candidate = f"{slug}-{n}"
    taken.add(candidate)
    return candidate


def _task_report(key: str, slug: str, runs: list[Run], out_dir: Path) -> dict:
    """Rank one task's runs, draw its plots, and return its part of `report.json`."""
    objective = runs[0].cfg.objective.name
    common = set.intersection(*(set(r.metrics) for r in runs))
    preferred = [m for m in PREFERRED_METRICS.get(objective, ()) if m in common]
    metrics = preferred + sorted(common - set(preferred))
    primary = metrics[0] if metrics else None
    higher_is_better = primary not in LOWER_IS_BETTER
    if primary is not None:
        runs = sorted(runs, key=lambda r: r.metrics[primary], reverse=higher_is_better)
    plots = _plots(slug, key, runs, primary, out_dir) if primary else {}
    return {
        "key": key,
        "title": f"{OBJECTIVE_TITLES.get(objective, objective)} ({objective}) on {data_identity(runs[0].cfg.data)}",
        "slug": slug,
        "primary_metric": primary,
        "higher_is_better": higher_is_better if primary else None,
        "metrics": metrics,
        "plots": plots,
        "runs": [
            {
                "name": r.name,
                "path": str(r.path),
                "arch": r.arch,
                "parameters": r.results.get("parameters"),
                "step": r.results.get("step"),
                "tokens_seen": r.results.get("tokens_seen"),
                "train_runtime": r.results.get("train_runtime"),
                "tokens_per_second": r.results.get("train_tokens_per_second"),
                "train_flops": r.train_flops,
                "metrics": r.metrics,
            }
            for r in runs
        ],
    }


def _plots(slug: str, title: str, runs: list[Run], metric: str, out_dir: Path) -> dict[str, str]:
    """Validation `metric` against wall time and against training FLOPs, one line per run."""
    lines: dict[str, dict] = {"time": {}, "flops": {}}
    for run in runs:
        evals = [rec for rec in run.records if f"eval_{metric}" in rec]
        if not evals:
            continue
        values = [rec[f"eval_{metric}"] for rec in evals]
        # Every evaluation record carries `elapsed`: cumulative wall seconds, across resumes.
        lines["time"][run.name] = ([rec["elapsed"] for rec in evals], values)
        if run.train_flops:
            lines["flops"][run.name] = (_flops_at(run, [rec["step"] for rec in evals]), values)
    plots = {}
    for kind, xlabel in X_AXES.items():
        if not lines[kind]:
            continue
        fig = Figure(figsize=(6, 4), dpi=100)  # no pyplot: no display, no global backend state
        ax = fig.subplots()
        for name, (xs, ys) in lines[kind].items():
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
        if kind == "flops":
            ax.set_xscale("log")  # runs of different model sizes span orders of magnitude of compute
        ax.set(xlabel=xlabel, ylabel=f"validation {metric}")
        ax.set_title(title, fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        plots[kind] = f"{slug}-vs-{kind}.png"
        fig.savefig(out_dir / plots[kind])
    return plots


def _flops_at(run: Run, steps: list[int]) -> list[float]:
    """Cumulative training FLOPs at each step: the tokens seen by then (linear between the training log
    records, which carry `tokens_seen`) times the run's FLOPs per token."""
    logged = [rec for rec in run.records if "tokens_seen" in rec]
    xs = [0, *(rec["step"] for rec in logged), run.results["step"]]
    ys = [0, *(rec["tokens_seen"] for rec in logged), run.results["tokens_seen"]]
    per_token = run.train_flops / run.results["tokens_seen"]
    return [float(tokens) * per_token for tokens in np.interp(steps, xs, ys)]


# --------------------------------------------------------------------------- Markdown


def _markdown(report: dict) -> str:
    runs = sum(len(task["runs"]) for task in report["tasks"])
    parts = [
        "# Run comparison\n",
        f"Generated {report['generated'].replace('T', ' ')} from {runs} run(s) in {len(report['tasks'])} task(s).\n",
        f"{report['conventions']}\n",
    ]
    for task in report["tasks"]:
        parts.append(f"## {task['title']}\n")
        if task["primary_metric"]:
            better = "higher" if task["higher_is_better"] else "lower"
            parts.append(f"Ranked by validation {task['primary_metric']} ({better} is better).\n")
        parts.append(_table(task) + "\n")
        links = [f"[{task['primary_metric']} vs {X_AXES[kind]}]({name})" for kind, name in task["plots"].items()]
        if links:
            parts.append("Plots: " + " · ".join(links) + "\n")
    return "\n".join(parts)


def _table(task: dict) -> str:
    header = ["run", "arch", "parameters", "training FLOPs", "wall time", "tokens seen", "tokens/s", *task["metrics"]]
    rows = [
        [
            run["name"].replace("|", "\\|"),
            run["arch"],
            _count(run["parameters"]),
            _flops(run["train_flops"]),
            _duration(run["train_runtime"]),
            _count(run["tokens_seen"]),
            "—" if run["tokens_per_second"] is None else f"{run['tokens_per_second']:,.0f}",
            *(f"{run['metrics'][m]:.4f}" for m in task["metrics"]),
        ]
        for run in task["runs"]
    ]
    align = ["---", "---"] + ["---:"] * (len(header) - 2)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in (header, align, *rows))


def _count(n: int | None) -> str:
    """1490000 → `1.49 M`."""
    if n is None:
        return "—"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _flops(x: float | None) -> str:
    """3.21e13 → `3.2e13`."""
    if x is None:
        return "—"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _duration(seconds: float | None) -> str:
    """306 → `5.1 min`."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
