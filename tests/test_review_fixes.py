"""Guards added after review: destructive --overwrite, bad generation options, fp16 on CPU, cut-off metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.errors import PipelineError
from pipelines.generation import GenerationSettings
from pipelines.training import loop
from pipelines.training.run_dir import check_output_dir


def test_overwrite_never_deletes_a_directory_that_holds_no_run(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    with pytest.raises(PipelineError, match="holds no run"):
        check_output_dir(cfg, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_unreadable_saved_config_is_a_clear_error(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"package": "pipelines", "run_id": "r1"}))
    (tmp_path / "config.yaml").write_text("")
    with pytest.raises(PipelineError, match="unreadable"):
        check_output_dir(load_config(None, [f"output_dir={tmp_path}"]))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"temperature": 0.0}, "--temperature"),
        ({"top_p": 1.5}, "--top-p"),
        ({"max_new_tokens": 0}, "--max-new-tokens"),
        ({"greedy": True, "num_return_sequences": 3}, "--greedy"),
        ({"top_k": 0}, "--top-k"),
    ],
)
def test_bad_generation_options_are_clear_errors(settings, message):
    with pytest.raises(PipelineError, match=message):
        GenerationSettings(**settings)


def test_greedy_ignores_temperature():
    assert GenerationSettings(greedy=True, temperature=0.0).generate_kwargs()["do_sample"] is False


def test_fp16_on_cpu_is_refused_or_falls_back(monkeypatch):
    monkeypatch.setattr(loop.torch.accelerator, "is_available", lambda: False)
    with pytest.raises(PipelineError, match="fp16 but this device cannot do it"):
        loop._supported_precision(load_config(None, ["train.mixed_precision=fp16"]).train)
    with pytest.warns(UserWarning, match="fp16 is not supported"):
        fallback = load_config(None, ["train.mixed_precision=fp16", "train.mixed_precision_fallback=true"])
        assert loop._supported_precision(fallback.train) == "no"


def test_a_cut_off_metrics_line_does_not_block_resume(tmp_path):
    from accelerate import Accelerator

    path = tmp_path / "metrics.jsonl"
    path.write_text(
        json.dumps({"step": 1, "loss": 2.0}) + "\n" + json.dumps({"step": 5, "loss": 1.0}) + '\n{"step": 6, "lo'
    )
    loop.MetricsLog(Accelerator(cpu=True), Path(path), resume_step=4)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1]


def test_extends_cycle_is_a_config_error(tmp_path):
    from pipelines.config import ConfigError

    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "a.yaml")
