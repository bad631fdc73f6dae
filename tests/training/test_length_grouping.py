"""`train.group_by_length`: batches of similar length, every example once per epoch, an order fixed by
(seed, epoch) that resume continues exactly, and a refusal for streaming data."""

from __future__ import annotations

import random
from itertools import islice

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from datasets import Dataset

from pipelines.config import ConfigError, TrainConfig, load_config
from pipelines.training.loop import LengthGroupedSampler, _batches, _loaders


def pairs(n: int = 400) -> Dataset:
    """Text-to-text rows of 1-60 input tokens and 1-40 label tokens."""
    rng = random.Random(0)
    rows = [{"input_ids": [1] * rng.randint(1, 60), "labels": [2] * rng.randint(1, 40)} for _ in range(n)]
    return Dataset.from_list(rows)


def collate(rows: list[dict]) -> dict:
    """Pads to the longest row, as the real collators do; keeps the indices' lengths for the assertions."""
    width = max(len(r["input_ids"]) + len(r["labels"]) for r in rows)
    lengths = torch.tensor([len(r["input_ids"]) + len(r["labels"]) for r in rows])
    return {"lengths": lengths, "width": torch.tensor(width)}


def padded_fraction(loader) -> float:
    batches = list(loader)
    real = sum(int(b["lengths"].sum()) for b in batches)
    padded = sum(int(b["width"]) * len(b["lengths"]) for b in batches)
    return 1 - real / padded


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    data = pairs()
    sampler = LengthGroupedSampler(data, batch_size=8, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(len(data)))
    assert list(LengthGroupedSampler(data, batch_size=8, seed=3)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(len(data)))
    assert list(LengthGroupedSampler(data, batch_size=8, seed=4)) != first
    # the length counts inputs and labels, or inputs alone where a label is a class
    assert sampler.lengths[:3] == [len(r["input_ids"]) + len(r["labels"]) for r in data.select(range(3))]
    classes = Dataset.from_list([{"input_ids": [1] * (i + 1), "labels": i % 2} for i in range(10)])
    assert LengthGroupedSampler(classes, batch_size=2, seed=0).lengths == list(range(1, 11))


def test_grouped_batches_carry_a_fraction_of_the_padding():
    data = pairs(2000)  # groups of 50 batches: 400 rows sorted together
    torch.manual_seed(0)  # the plain shuffle draws from the global generator
    plain, _ = _loaders(TrainConfig(per_device_train_batch_size=8), 0, data, None, collate, collate)
    grouped, _ = _loaders(TrainConfig(per_device_train_batch_size=8, group_by_length=True), 0, data, None, collate,
                          collate)  # fmt: skip
    shuffled, sorted_ = padded_fraction(plain), padded_fraction(grouped)
    assert shuffled > 0.3  # random batches of 8 from 2-100 tokens pad about a third
    assert sorted_ < shuffled / 10  # about 0.016 against 0.36


def test_resume_continues_the_grouped_order_across_epochs():
    """A run resumed at micro-batch 30 (an epoch is 50) sees exactly what the uninterrupted run saw from there."""
    data = pairs()
    cfg = TrainConfig(per_device_train_batch_size=8, group_by_length=True)

    def loader():
        accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
        return accelerator, accelerator.prepare(_loaders(cfg, 5, data, None, collate, collate)[0])

    def lengths(batches):
        return [b["lengths"].tolist() for b in batches]

    accelerator, train = loader()
    assert len(train) == 50
    uninterrupted = lengths(islice(_batches(accelerator, train, 0), 80))
    accelerator, train = loader()
    resumed = lengths(islice(_batches(accelerator, train, 30), 50))
    assert resumed == uninterrupted[30:]
    assert uninterrupted[50:] != uninterrupted[:30]  # the next epoch is reshuffled


def test_streaming_data_refuses_grouping():
    with pytest.raises(ConfigError, match="group_by_length"):
        load_config(None, ["train.group_by_length=true", "data.streaming=true"])
