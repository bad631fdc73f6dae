"""Streaming sources: the same token stream as the in-memory path, training, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.data.prepare import prepare_lm_data
from pipelines.data.sources import load_raw_datasets
from pipelines.errors import TrainingInterrupted
from pipelines.objectives import OBJECTIVES
from pipelines.pretrain import pretrain
from pipelines.tokenization import load_tokenizer
from pipelines.training import loop


@pytest.fixture
def corpus(tmp_path) -> list[str]:
    """Two small local text files (train, validation) taken from the built-in corpus."""
    docs = load_raw_datasets(load_config(None, ["data.max_documents=60"]).data, seed=0)
    for name in ("train", "validation"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[name]["text"]))
    return ["data.source=files", f"data.path={tmp_path / 'train.jsonl'}",
            f"data.validation_path={tmp_path / 'validation.jsonl'}", "data.max_documents=null"]  # fmt: skip


def blocks_of(split) -> list[tuple[int, ...]]:
    return [tuple(example["input_ids"]) for example in split]


def test_streaming_gives_the_in_memory_blocks(tiny_overrides, corpus):
    cfg = load_config(None, [*tiny_overrides, *corpus])
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    packing = OBJECTIVES.get("clm").packing(tokenizer)
    in_memory = prepare_lm_data(cfg.data, cfg.seed, tokenizer, packing)
    streamed = prepare_lm_data(load_config(None, [*tiny_overrides, *corpus, "data.streaming=true"]).data,
                               cfg.seed, tokenizer, packing)  # fmt: skip
    assert blocks_of(streamed.blocks["validation"]) == blocks_of(in_memory.blocks["validation"])  # same order
    assert sorted(blocks_of(streamed.blocks["train"])) == sorted(blocks_of(in_memory.blocks["train"]))  # shuffled
    assert streamed.bytes_per_token["validation"] == pytest.approx(in_memory.bytes_per_token["validation"])


def test_streaming_carve_out_is_deterministic_and_disjoint(tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "data.streaming=true", "data.validation_fraction=0.25"]).data
    first, second = load_raw_datasets(cfg, 0), load_raw_datasets(cfg, 0)
    held_out = [d["text"] for d in first["validation"].take(20)]
    assert held_out == [d["text"] for d in second["validation"].take(20)]
    assert not set(held_out) & {d["text"] for d in first["train"]}


def test_streaming_run_resumes_on_the_same_trajectory(tiny_overrides, corpus, tmp_path, monkeypatch):
    steps = [*corpus, "data.streaming=true", "train.max_steps=12", "train.save_steps=4", "train.eval_steps=4"]
    reference = load_config(None, [*tiny_overrides, *steps, f"output_dir={tmp_path / 'reference'}"])
    pretrain(reference)

    cfg = load_config(None, [*tiny_overrides, *steps, f"output_dir={tmp_path / 'resumed'}"])
    real, calls = loop._any_process, {"n": 0}

    def stop_at_step_6(accelerator, flag):
        calls["n"] += 1
        return real(accelerator, flag) or calls["n"] == 6

    monkeypatch.setattr(loop, "_any_process", stop_at_step_6)
    with pytest.raises(TrainingInterrupted):
        pretrain(cfg)
    monkeypatch.setattr(loop, "_any_process", real)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    pretrain(cfg)

    def losses(run: Path) -> list[float]:
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in records if "loss" in r]

    assert len(losses(tmp_path / "resumed")) == 12
    assert losses(tmp_path / "resumed") == pytest.approx(losses(tmp_path / "reference"), rel=1e-5)
    assert losses(tmp_path / "reference")[-1] < losses(tmp_path / "reference")[0]


@pytest.mark.parametrize(
    ("command", "sets", "expected"),
    [
        ("finetune", ["objective.name=cls", "data.labels=[a,b]"], "labelled examples are loaded in memory"),
        ("finetune", ["objective.name=seq2seq", "model.arch=t5"], "text-to-text examples are loaded in memory"),
        ("prepare", ["data.prepared_path=tokens"], "prepare writes token files from an in-memory source"),
        ("train-tokenizer", ["tokenizer.path=tok"], "train the tokenizer on in-memory data"),
        (
            "train-tokenizer",
            ["data.source=parallel", "data.column_names=[en,de]", "tokenizer.path=tok"],
            "'parallel' reads line files into memory",
        ),
    ],
    ids=["labelled", "text-to-text", "prepare", "train-tokenizer", "parallel"],
)
def test_readers_that_need_the_whole_data_set_refuse_streaming(command, sets, expected, tmp_path, corpus, capsys,
                                                               monkeypatch):  # fmt: skip
    from tests.test_cli import run_cli

    monkeypatch.chdir(tmp_path)
    overrides = [*corpus, "data.streaming=true", *sets, f"output_dir={tmp_path / 'run'}"]
    code, err = run_cli(capsys, command, *(x for s in overrides for x in ("--set", s)))
    assert code == 2 and expected in err, err
    assert not (tmp_path / "run").exists()  # refused before any work
