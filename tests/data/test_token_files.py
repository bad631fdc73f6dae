"""Pre-tokenized memory-mapped token files: round trip, same token stream as the in-memory path, training."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import chain
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.config import load_config
from pipelines.data.prepare import prepare_lm_data
from pipelines.errors import PipelineError
from pipelines.objectives import OBJECTIVES
from pipelines.pretrain import pretrain
from pipelines.tokenization import load_tokenizer


def content(blocks, packing) -> list[int]:
    """The token stream inside the blocks, without each block's prefix and suffix."""
    cut = slice(len(packing.prefix), -len(packing.suffix) or None)
    return list(chain.from_iterable(blocks[i]["input_ids"][cut] for i in range(len(blocks))))


def test_prepared_files_round_trip_and_match_the_in_memory_stream(tiny_overrides, tmp_path, capsys):
    prepared = tmp_path / "tokens"
    sets = [*tiny_overrides, f"data.prepared_path={prepared}"]
    main(["prepare", *sum((["--set", s] for s in sets), [])])
    assert "prepared train:" in capsys.readouterr().out
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["dtype"] == "uint16"  # a 512-token vocabulary fits in two bytes

    cfg = load_config(None, sets)
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    packing = OBJECTIVES.get("clm").packing(tokenizer)
    from_files = prepare_lm_data(cfg.data, cfg.seed, tokenizer, packing)
    in_memory = prepare_lm_data(load_config(None, tiny_overrides).data, cfg.seed, tokenizer, packing)
    for split in ("train", "validation"):
        stream = content(from_files.blocks[split], packing)
        assert stream == content(in_memory.blocks[split], packing)  # same tokens, same order
        assert len(stream) == meta["splits"][split]["tokens"] == len(np.fromfile(prepared / f"{split}.bin", "uint16"))
        assert from_files.bytes_per_token[split] == pytest.approx(in_memory.bytes_per_token[split])
    assert all(
        len(from_files.blocks["train"][i]["input_ids"]) == 32 for i in range(len(from_files.blocks["train"]) - 1)
    )

    with pytest.raises(SystemExit):
        main(["prepare", *sum((["--set", s] for s in sets), [])])
    assert "already holds prepared tokens" in capsys.readouterr().err


def test_both_paths_cut_the_same_shifted_blocks_each_epoch(tiny_overrides, tmp_path):
    prepared = tmp_path / "tokens"
    shifted = [*tiny_overrides, "data.shift_blocks=true"]
    main(["prepare", *sum((["--set", s] for s in [*shifted, f"data.prepared_path={prepared}"]), [])])
    cfg = load_config(None, shifted)
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    packing = OBJECTIVES.get("clm").packing(tokenizer)
    from_files = prepare_lm_data(replace(cfg.data, prepared_path=str(prepared)), cfg.seed, tokenizer, packing)
    in_memory = prepare_lm_data(cfg.data, cfg.seed, tokenizer, packing)
    fixed = prepare_lm_data(load_config(None, tiny_overrides).data, cfg.seed, tokenizer, packing).blocks["train"]
    cuts = []
    for epoch in range(3):
        for blocks in (from_files.blocks["train"], in_memory.blocks["train"]):
            blocks.set_epoch(epoch)
        cuts.append([from_files.blocks["train"][i]["input_ids"] for i in range(len(fixed))])
        assert cuts[-1] == [in_memory.blocks["train"][i]["input_ids"] for i in range(len(fixed))]
        assert content(in_memory.blocks["train"], packing) != content(fixed, packing)  # rotated...
        assert sorted(content(in_memory.blocks["train"], packing)) == sorted(content(fixed, packing))  # ...whole
    assert cuts[0] != cuts[1] != cuts[2]
    validation = content(from_files.blocks["validation"], packing)
    from_files.blocks["validation"].set_epoch(1)  # validation is never shifted
    assert content(from_files.blocks["validation"], packing) == validation
    assert validation == content(in_memory.blocks["validation"], packing)


def test_training_from_prepared_files_follows_the_in_memory_trajectory(tiny_overrides, tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    steps = ["train.max_steps=8", "train.save_steps=4", "train.eval_steps=4"]
    prepared = tmp_path / "tokens"
    sets = [*tiny_overrides, *steps, f"data.prepared_path={prepared}", f"output_dir={tmp_path / 'files'}"]
    main(["prepare", *sum((["--set", s] for s in sets), [])])
    from_files = pretrain(load_config(None, sets))
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    in_memory = pretrain(load_config(None, [*tiny_overrides, *steps, f"output_dir={tmp_path / 'memory'}"]))

    # 80 documents fit in one `datasets.map` batch, so both paths cut the same blocks: same data order, same losses.
    def losses(run: Path) -> list[float]:
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in records if "loss" in r]

    assert losses(tmp_path / "files") == pytest.approx(losses(tmp_path / "memory"), rel=1e-5)
    assert from_files["eval_bits_per_byte"] == pytest.approx(in_memory["eval_bits_per_byte"], rel=1e-5)


def test_tokens_prepared_for_another_tokenizer_are_refused(tiny_overrides, tmp_path):
    from dataclasses import replace

    sets = [*tiny_overrides, f"data.prepared_path={tmp_path / 'tokens'}"]
    main(["prepare", *sum((["--set", s] for s in sets), [])])
    cfg = load_config(None, sets)
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    other = replace(OBJECTIVES.get("clm").packing(tokenizer), separator_id=1)
    with pytest.raises(PipelineError, match="prepared with another tokenizer or objective"):
        prepare_lm_data(cfg.data, cfg.seed, tokenizer, other)
