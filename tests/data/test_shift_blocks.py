"""`data.shift_blocks`: the training text cut at a new offset each epoch, every token once, resumable, the same cut
in every process."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import DataLoaderConfiguration

from pipelines.config import ConfigError, TrainConfig, load_config
from pipelines.data.tokens import TokenBlocks
from pipelines.training.loop import _batches, _loaders

TOKENS = np.arange(1000, dtype=np.uint16)  # token i at position i: a block's first token says where it was cut


def collate(rows: list[dict]) -> dict:
    return {"input_ids": torch.tensor([row["input_ids"] + [0] * (32 - len(row["input_ids"])) for row in rows])}


def epoch_cut(blocks: TokenBlocks) -> list[int]:
    return [t for i in range(len(blocks)) for t in blocks[i]["input_ids"]]


def test_each_epoch_cuts_every_token_once_at_its_own_offset():
    blocks = TokenBlocks(TOKENS, 32, shift_seed=7)
    offsets = []
    for epoch in range(6):
        blocks.set_epoch(epoch)
        offsets.append(blocks.offset)
        assert epoch_cut(blocks) == np.roll(TOKENS, -blocks.offset).tolist()  # a rotation: every token once
        assert len(blocks) == 32 and len(blocks[31]["input_ids"]) == 1000 - 31 * 32  # the same blocks per epoch
    assert len(set(offsets)) >= 4 and all(0 <= o < 32 for o in offsets)
    again = TokenBlocks(TOKENS, 32, shift_seed=7)
    again.set_epoch(4)
    assert again.offset == offsets[4]  # a pure function of (seed, epoch): a resumed run cuts alike
    fixed = TokenBlocks(TOKENS, 32)
    fixed.set_epoch(3)
    assert epoch_cut(fixed) == TOKENS.tolist()  # without a seed, the same cut every epoch


def test_prefix_and_suffix_frame_every_shifted_block():
    blocks = TokenBlocks(TOKENS, 32, prefix=(5000,), suffix=(5001,), shift_seed=1)
    blocks.set_epoch(2)
    rows = [blocks[i]["input_ids"] for i in range(len(blocks))]
    assert all(row[0] == 5000 and row[-1] == 5001 for row in rows)
    assert [t for row in rows for t in row[1:-1]] == np.roll(TOKENS, -blocks.offset).tolist()


def first_tokens(batches) -> list[list[int]]:
    return [b["input_ids"][:, 0].tolist() for b in batches]


def test_a_resumed_run_sees_the_blocks_of_the_uninterrupted_one():
    """Resumed at micro-batch 40 (an epoch is 32 batches of one block): the same blocks from there, and the next
    epoch's blocks start at other tokens than the first epoch's."""
    cfg = TrainConfig(per_device_train_batch_size=1)

    def loader():
        accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
        blocks = TokenBlocks(TOKENS, 32, shift_seed=3)
        return accelerator, accelerator.prepare(_loaders(cfg, 3, blocks, None, collate, collate)[0])

    accelerator, train = loader()
    uninterrupted = first_tokens(islice(_batches(accelerator, train, 0), 80))
    accelerator, train = loader()
    assert first_tokens(islice(_batches(accelerator, train, 40), 40)) == uninterrupted[40:]
    assert set(map(tuple, uninterrupted[:32])).isdisjoint(map(tuple, uninterrupted[32:64]))


def test_every_process_cuts_the_epoch_at_the_same_offset():
    """Two processes' shards of an epoch (accelerate does not pass the epoch on to a dataset behind a sharded
    sampler, so the loop does) hold every block of that epoch's one cut, each once."""
    seen = {0: [], 1: []}
    for rank in (0, 1):  # each process has its own copy of the dataset
        loader = _loaders(TrainConfig(per_device_train_batch_size=2), 3, TokenBlocks(TOKENS, 32, shift_seed=3), None,
                          collate, collate)[0]  # fmt: skip
        shard = prepare_data_loader(loader, num_processes=2, process_index=rank, put_on_device=False,
                                    use_seedable_sampler=True)  # fmt: skip
        for epoch, batch in enumerate(islice(_batches(None, shard, 0), 2 * len(shard))):
            seen[epoch // len(shard)].extend(batch["input_ids"][:, 0].tolist())
    reference = TokenBlocks(TOKENS, 32, shift_seed=3)
    for epoch, firsts in seen.items():
        reference.set_epoch(epoch)
        cut = sorted(reference[i]["input_ids"][0] for i in range(len(reference)))
        assert sorted(firsts) == cut
    assert set(seen[0]).isdisjoint(seen[1])


def test_shifting_a_stream_or_a_mixture_source_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="streaming data"):
        load_config(None, ["data.shift_blocks=true", "data.streaming=true"])
    config = tmp_path / "mixture.yaml"
    config.write_text("objective: {name: seq2seq}\nmodel: {arch: t5}\ndata:\n  mixture:\n"
                      "    - {kind: span_corruption, data: {source: builtin, shift_blocks: true}}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="shift_blocks"):
        load_config(config, [])
