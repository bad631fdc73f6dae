"""The quickstart command end to end (tiny overrides), and the shipped task configs on the real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.config import load_config
from tests.conftest import DATA, REPO, TINY


def test_quickstart_trains_exports_and_samples(tmp_path, capsys, caplog):
    sets = [*TINY, "train.max_steps=20", "train.report_to=tensorboard"]
    main(["quickstart", "--output-dir", str(tmp_path / "qs"), *sum((["--set", s] for s in sets), [])])
    out = capsys.readouterr().out
    assert "[1/3]" in out and "[2/3] pretraining a qwen3" in out and "[3/3]" in out
    assert all(f"--- sample {i}/3" in out for i in (1, 2, 3))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert not [w for w in warnings if "Removed shared tensor" in w or "`loss_type=None`" in w], warnings
    assert all(prompt in out for prompt in ("Return the", "This module provides"))
    assert (tmp_path / "qs" / "tokenizer" / "tokenizer.json").is_file()
    run = tmp_path / "qs" / "model"
    assert json.loads((run / "eval_results.json").read_text())["step"] == 20
    assert list((run / "tensorboard").rglob("events.out.tfevents.*")), "accelerate's TensorBoard tracker wrote nothing"

    main(["quickstart", "--output-dir", str(tmp_path / "qs"), *sum((["--set", s] for s in sets), [])])
    assert capsys.readouterr().out.count("already trained; reusing it") == 2  # a finished quickstart is kept


def test_the_quickstart_trains_the_tiny_presets_recipe():
    from pipelines.cli import QUICKSTART_RECIPE

    quickstart, preset = load_config(None, list(QUICKSTART_RECIPE)), load_config(REPO / "configs/gpt/tiny.yaml")
    assert quickstart.model == preset.model
    assert quickstart.optim == preset.optim and quickstart.optim.name == "normuon"
    assert quickstart.data.block_size == preset.data.block_size and quickstart.train.max_steps == preset.train.max_steps
    assert quickstart.data.shift_blocks and preset.data.shift_blocks


def test_bf16_autocast_trains_on_cpu(tiny_overrides):
    import torch

    from pipelines.pretrain import pretrain

    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN: CPU bf16 autocast unavailable")
    cfg = load_config(None, [*tiny_overrides, "train.mixed_precision=bf16", "train.max_steps=5"])
    results = pretrain(cfg)
    assert results["eval_loss"] < 7.0 and "mixed_precision: bf16" in (Path(cfg.output_dir) / "config.yaml").read_text()


TASKS = {  # config → (label count, label names that must be present)
    "sst2-bert.yaml": (2, {"negative", "positive"}),
    "trec-bert.yaml": (6, {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}),
    "agnews-bert.yaml": (4, {"World", "Sports", "Business", "Sci/Tech"}),
}


@pytest.mark.skipif(not DATA.is_dir(), reason="data/ is not here: python -m pipelines fetch-data")
@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_configs_read_the_real_files(name, monkeypatch):
    from pipelines.data.prepare import prepare_classification_data
    from pipelines.tokenization import load_tokenizer

    monkeypatch.chdir(REPO)  # the configs use paths relative to the repository
    cfg = load_config(REPO / "configs" / "finetune" / name, ["data.max_documents=200"])
    data = prepare_classification_data(cfg.data, cfg.seed, load_tokenizer(REPO / "tokenizers" / "bert-builtin"))
    count, names = TASKS[name]
    assert len(data.labels) == count and set(data.labels) == names
    example = data.examples["validation"][0]
    assert 2 < len(example["input_ids"]) <= cfg.data.block_size and 0 <= example["labels"] < count
