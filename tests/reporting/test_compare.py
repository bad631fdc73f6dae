"""`compare_runs` on fake finished run directories with known figures: tables per task, JSON, plots, errors."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest

from pipelines.config import parse_config, save_config
from pipelines.errors import PipelineError
from pipelines.reporting import compare_runs

SST2 = {"source": "files", "path": "data/sst2/train.tsv"}
CLS_KEY = "cls on files:data/sst2/train.tsv"
CLM_KEY = "clm on builtin"


def fake_run(root: Path, name: str, arch: str, objective: str, data: dict, results: dict) -> Path:
    """A finished run: config.yaml, metrics.jsonl (logs and evaluations at steps 50 and 100), eval_results.json."""
    run = root / name
    run.mkdir()
    cfg = parse_config(
        {"output_dir": str(run), "data": data, "model": {"arch": arch}, "objective": {"name": objective}}
    )
    save_config(cfg, run / "config.yaml")
    evals = {k: v for k, v in results.items() if k.startswith("eval_")}
    lines = []
    for step in (50, 100):
        fraction = step / results["step"]
        lines.append({"step": step, "loss": 1.0, "tokens_seen": int(results["tokens_seen"] * fraction), "elapsed": 1.0})
        # Earlier evaluations differ from the last one, which eval_results.json repeats.
        lines.append({"step": step, **{k: v * (2 - fraction) for k, v in evals.items()}, "elapsed": 300.0 * fraction})
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run / "eval_results.json").write_text(json.dumps(results))
    return run


def common(**figures) -> dict:
    return {"step": 100, "tokens_seen": 2_048_000, "train_runtime": 306.0, "train_tokens_per_second": 6692.8, **figures}


@pytest.fixture
def runs(tmp_path) -> dict[str, Path]:
    root = tmp_path / "runs"
    root.mkdir()
    return {
        "bert": fake_run(root, "bert-sst2", "bert", "cls", SST2, common(
            parameters=1_490_000, flops_per_token=15_625_000.0, train_flops=3.2e13,
            eval_accuracy=0.8125, eval_loss=0.4321, eval_f1=0.8, eval_examples=64,
        )),
        # FLOPs never measured: the loop writes flops_per_token None and train_flops 0.
        "textcnn": fake_run(root, "textcnn-sst2", "textcnn", "cls", SST2, common(
            parameters=250_000, flops_per_token=None, train_flops=0.0,
            eval_accuracy=0.75, eval_loss=0.51, eval_examples=64, train_runtime=42.0,
        )),
        "gpt": fake_run(root, "gpt-builtin", "gpt2", "clm", {"source": "builtin"}, common(
            parameters=3_210_000, flops_per_token=2.0e7, train_flops=4.096e13,
            eval_loss=3.5, eval_perplexity=33.1155, eval_bits_per_byte=1.2345, eval_token_accuracy=0.3,
            eval_tokens=4096, train_runtime=7200.0,
        )),
    }  # fmt: skip


def sections(markdown: str) -> dict[str, str]:
    """`## title` → the text of that section."""
    parts = markdown.split("\n## ")[1:]
    return {part.splitlines()[0]: part for part in parts}


def test_one_table_per_task_with_real_figures(runs, tmp_path):
    out = tmp_path / "report"
    report = compare_runs([runs["textcnn"], runs["gpt"], runs["bert"]], out)

    by_title = sections((out / "report.md").read_text())
    cls = by_title["Sequence classification (cls) on files:data/sst2/train.tsv"]
    clm = by_title["Causal language modelling (clm) on builtin"]
    assert len(by_title) == 2
    # Only metrics that every run has; accuracy first; best run first; FLOPs missing for textcnn.
    assert "| run | arch | parameters | training FLOPs | wall time | tokens seen | tokens/s | accuracy | loss |" in cls
    assert "f1" not in cls and "examples" not in cls
    bert_row = "| bert-sst2 | bert | 1.49 M | 3.2e13 | 5.1 min | 2.05 M | 6,693 | 0.8125 | 0.4321 |"
    textcnn_row = "| textcnn-sst2 | textcnn | 250.00 k | — | 42 s | 2.05 M | 6,693 | 0.7500 | 0.5100 |"
    assert bert_row in cls and textcnn_row in cls
    assert cls.index(bert_row) < cls.index(textcnn_row)
    assert "gpt-builtin" not in cls
    assert "| bits_per_byte | loss | perplexity | token_accuracy |" in clm
    gpt_row = "| gpt-builtin | gpt2 | 3.21 M | 4.1e13 | 2.0 h | 2.05 M | 6,693 | 1.2345 | 3.5000 | 33.1155 | 0.3000 |"
    assert gpt_row in clm
    assert "bert-sst2" not in clm and "textcnn-sst2" not in clm

    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    tasks = {task["key"]: task for task in saved["tasks"]}
    assert set(tasks) == {CLS_KEY, CLM_KEY}
    assert tasks[CLS_KEY]["metrics"] == ["accuracy", "loss"]
    assert [r["name"] for r in tasks[CLS_KEY]["runs"]] == ["bert-sst2", "textcnn-sst2"]
    for task in saved["tasks"]:
        for run in task["runs"]:
            results = json.loads((Path(run["path"]) / "eval_results.json").read_text())
            scores = {k[5:]: v for k, v in results.items() if k.startswith("eval_") and type(v) is float}
            assert run["metrics"] == scores
            assert run["parameters"] == results["parameters"]
            assert run["tokens_seen"] == results["tokens_seen"]
            assert run["train_runtime"] == results["train_runtime"]
            assert run["tokens_per_second"] == results["train_tokens_per_second"]
            assert run["train_flops"] == (results["train_flops"] or None)

    for task in saved["tasks"]:
        assert set(task["plots"]) == {"time", "flops"}
        for name in task["plots"].values():
            assert f"({name})" in (out / "report.md").read_text()
            png = out / name
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert matplotlib.image.imread(png).shape[:2] == (400, 600)  # 6 × 4 in at 100 dpi


def test_missing_results_names_the_directory(runs, tmp_path):
    (runs["bert"] / "eval_results.json").unlink()
    with pytest.raises(PipelineError, match="bert-sst2.*eval_results.json"):
        compare_runs([runs["bert"], runs["textcnn"]], tmp_path / "report")


def test_strict_refuses_mixed_tasks(runs, tmp_path):
    with pytest.raises(PipelineError, match="found 2") as err:
        compare_runs(list(runs.values()), tmp_path / "report", strict=True)
    assert CLS_KEY in str(err.value) and CLM_KEY in str(err.value)
    report = compare_runs([runs["bert"], runs["textcnn"]], tmp_path / "report", strict=True)
    assert [task["key"] for task in report["tasks"]] == [CLS_KEY]
