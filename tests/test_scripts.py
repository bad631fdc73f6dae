"""The benchmark scripts the docs name, run end to end at tiny sizes: each writes the figures it promises.

A benchmark that is only run once a month goes stale silently (a renamed config key, a moved function); these
runs take seconds and check each script's output, not its numbers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from pipelines.tokenization import load_tokenizer
from pipelines.training.loop import inductor_can_compile
from pipelines.training.optimizer import cpu_computes_bfloat16
from tests.conftest import REPO
from tests.test_docs_commands import PAGES, shell_lines

ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TESTED = {"benchmark_gpt.py", "benchmark_low_label.py", "benchmark_models.py", "reference_char_gpt.py", "run_suite.py"}


def run_script(*argv: str, cwd=REPO, code: str | None = None, env: dict | None = None) -> str:
    command = [sys.executable, "-c", code, *argv] if code else [sys.executable, *argv]
    result = subprocess.run(command, cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and line.endswith("}")]


def test_every_script_the_docs_name_has_a_test_here():
    named = {m for page in PAGES for line in shell_lines(page.read_text())
             for m in re.findall(r"scripts/(\w+\.py)", line)}  # fmt: skip
    named |= {p.name for p in (REPO / "scripts").glob("*.py")}
    assert named <= TESTED, named - TESTED


@pytest.fixture
def shakespeare(tmp_path):
    lines = [f"{'FIRST' if i % 2 else 'SECOND'} CITIZEN:\nWe are accounted poor citizens, the patricians good {i}.\n"
             for i in range(600)]  # fmt: skip
    path = tmp_path / "input.txt"
    path.write_text("\n".join(lines))
    return path


def test_benchmark_gpt_runs_the_reference_then_the_pipeline_for_its_time(shakespeare, tmp_path):
    # The reference shortened to 20 iterations, the model not compiled (the next test compiles); else as documented.
    code = ("import runpy, sys; sys.path.insert(0, 'scripts'); import reference_char_gpt as r; r.ITERS, r.WARMUP = "
            "20, 2; sys.argv = ['benchmark_gpt.py', *sys.argv[1:]]; runpy.run_path('scripts/benchmark_gpt.py', "
            "run_name='__main__')")  # fmt: skip
    out = run_script("--text", str(shakespeare), "--seeds", "1", "--bare-steps", "3", "--work-dir",
                     str(tmp_path / "work"), "--set", "tokenizer.vocab_size=300", "--set", "train.logging_steps=1",
                     "--set", "train.torch_compile=false", code=code)  # fmt: skip
    (row,) = json_lines(out)
    assert row["seed"] == 1 and 0 < row["reference_bits_per_char"] < 8 and 0 < row["pipeline_bits_per_byte"] < 12
    assert row["ratio"] == pytest.approx(row["pipeline_bits_per_byte"] / row["reference_bits_per_char"], abs=1e-3)
    assert row["pipeline_train_s"] <= row["reference_wall_s"] + 5  # the reference's time is the pipeline's budget
    summary = json.loads(out[out.rindex("\n{") :])
    assert summary["pipeline_tokens_per_s"] > 0 and summary["bare_pytorch_tokens_per_s"] > 0
    assert "pipeline_overhead_pct" in summary and "mean_ratio" in summary
    before, after = summary["bare_pytorch_tokens_per_s_before_after"]  # bracketing the last run
    assert summary["bare_pytorch_tokens_per_s"] == pytest.approx((before + after) / 2, abs=1)
    assert summary["mixed_precision"] == ("bf16" if cpu_computes_bfloat16() else "no")
    assert summary["attn_implementation"] == ("eager" if cpu_computes_bfloat16() else "sdpa")  # no GPU in the tests
    assert summary["torch_compile"] is False and "compile_warmup_s" not in summary
    train, valid = ((tmp_path / "work" / name).read_text() for name in ("train.txt", "valid.txt"))
    text = shakespeare.read_text()
    assert train + valid == text and len(train) == int(0.9 * len(text))  # the reference's own cut


@pytest.mark.skipif(not inductor_can_compile(), reason="inductor needs a C++ compiler on CPU")
def test_benchmark_gpt_compiles_with_inductors_cache_filled_before_the_timed_runs(shakespeare, tmp_path):
    # A fresh cache: the untimed warm-up compiles from scratch, the timed run loads the kernels from it.
    out = run_script("scripts/benchmark_gpt.py", "--text", str(shakespeare), "--no-reference", "--budget", "10",
                     "--bare-steps", "2", "--work-dir", str(tmp_path / "work"), "--set", "tokenizer.vocab_size=300",
                     "--set", "train.logging_steps=1",
                     env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")})  # fmt: skip
    (row,) = json_lines(out)
    summary = json.loads(out[out.rindex("\n{") :])
    assert summary["torch_compile"] is True and (tmp_path / "work" / "compile-warmup" / "final").is_dir()
    assert row["pipeline_wall_s"] < summary["compile_warmup_s"] / 2  # the same graphs, loaded instead of compiled
    assert row["pipeline_steps"] > 2 and 0 < row["pipeline_bits_per_byte"] < 12
    assert summary["bare_pytorch_tokens_per_s"] > 0  # the bare loop compiled the same way


def test_benchmark_gpt_keeps_a_tokenizer_per_setting_in_a_reused_work_dir(shakespeare, tmp_path):
    work = tmp_path / "work"
    for vocab in (300, 280, 300):
        run_script("scripts/benchmark_gpt.py", "--text", str(shakespeare), "--no-reference", "--budget", "1",
                   "--bare-steps", "0", "--work-dir", str(work), "--set", f"tokenizer.vocab_size={vocab}",
                   "--set", "train.torch_compile=false")  # fmt: skip
    sizes = sorted(len(load_tokenizer(path)) for path in work.glob("tokenizer-*"))
    assert sizes == [280, 300]  # the third run reused the first one's tokenizer


def test_benchmark_low_label_writes_a_table_and_plot_for_each_model(tmp_path):
    sst2 = tmp_path / "sst2"
    sst2.mkdir()
    words = {0: ["dull", "bad", "tedious"], 1: ["great", "moving", "funny"]}
    for name, n in (("train.tsv", 120), ("dev.tsv", 40)):
        rows = [f"a {words[i % 2][i % 3]} film number {i}\t{i % 2}" for i in range(n)]
        (sst2 / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    extra = tmp_path / "reviews.txt"
    extra.write_text("".join(f"an unlabelled review {i}\n\n" for i in range(10)))  # blank lines are skipped
    tiny = [
        "train.max_steps=3",
        "train.eval_steps=3",
        "train.save_steps=3",
        "optim.warmup_steps=0",
        "train.per_device_train_batch_size=4",
    ]
    out = run_script("scripts/benchmark_low_label.py", "--family", "bert", "--sst2", str(sst2), "--labels", "20",
                     "all", "--seeds", "1", "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                     "--extra-text", str(extra), str(sst2 / "dev.tsv"),
                     *(x for s in tiny for x in ("--pretrain-set", s)),
                     *(x for s in tiny for x in ("--finetune-set", s)))  # fmt: skip
    rows = json_lines(out)
    assert rows[0]["pretraining"]["steps"] == 3 and "dev_text_token_accuracy" in rows[0]["pretraining"]
    assert rows[0]["pretraining"]["documents"] == 120 + 10 + 40
    assert {(r["model"], r["labels"]) for r in rows[1:]} == {(m, n) for m in ("pretrained", "scratch", "textcnn")
                                                               for n in ("20", "all")}  # fmt: skip
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.splitlines()[0] == "| model | 20 labels | all labels |" and table.count("(1)") == 6
    assert (tmp_path / "out" / "plot.png").stat().st_size > 1000


def test_benchmark_models_prints_a_throughput_row_per_config():
    out = run_script("scripts/benchmark_models.py", "--configs", "configs/gpt/tiny.yaml", "configs/t5/tiny.yaml",
                     "--steps", "2", "--batch-size", "2", "--modes", "fp32")  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| configs/")]
    assert [r.split(" | ")[1] for r in rows] == ["qwen3", "t5"]
    assert all(float(r.split(" | ")[-1].strip(" |").replace(",", "")) > 0 for r in rows)


def test_run_suite_trains_each_run_once_then_writes_the_report(tmp_path):
    tiny = ["train.max_steps=2", "train.eval_steps=2", "train.save_steps=2", "train.eval_max_batches=1",
            "data.max_documents=200", "train.report_to=none"]  # fmt: skip
    gpt = {"name": "gpt", "command": "pretrain", "config": "configs/gpt/tiny.yaml", "budget": 60, "set": tiny}
    lstm = {"name": "lstm", "command": "pretrain", "config": "configs/gpt/tiny.yaml",
            "set": [*tiny, "model.arch=lstm_lm", "model.num_layers=1"]}  # fmt: skip
    suite = {"root": str(tmp_path / "runs"), "out": str(tmp_path / "report"), "runs": [gpt, lstm]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    out = run_script("scripts/run_suite.py", str(tmp_path / "suite.yaml"))
    assert out.count("$ ") == 2
    assert (tmp_path / "report" / "report.md").is_file()
    assert "gpt" in (tmp_path / "report" / "report.md").read_text()
    assert run_script("scripts/run_suite.py", str(tmp_path / "suite.yaml")).count("$ ") == 0  # finished: skipped
