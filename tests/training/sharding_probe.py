"""Run under `accelerate launch`: one epoch through the pipeline's own accelerator and loaders, then gather
which example ids each process saw. Used by test_distributed.py; not a test module itself."""

from __future__ import annotations

import json
import sys

import torch
from torch.utils.data import DataLoader

from pipelines.config import load_config
from pipelines.training.loop import _batches, build_accelerator


def main(out: str, examples: int, batch_size: int) -> None:
    cfg = load_config(None, ["train.report_to=none"])
    accelerator = build_accelerator(cfg.train, "unused", seed=0)
    data = [{"input_ids": [i]} for i in range(examples)]
    collate = lambda rows: {"input_ids": torch.tensor([r["input_ids"] for r in rows])}  # noqa: E731
    train = accelerator.prepare(
        DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collate)
    )
    evaluation = accelerator.prepare(DataLoader(data, batch_size=batch_size, collate_fn=collate))

    seen = []
    for step, batch in enumerate(_batches(accelerator, train, start_micro_batch=0)):
        if step == len(train):  # one epoch per process
            break
        seen.append(accelerator.gather(batch["input_ids"][:, 0]))
    evaluated = [accelerator.gather_for_metrics(batch["input_ids"][:, 0]) for batch in evaluation]
    if accelerator.is_main_process:
        result = {"train": torch.cat(seen).tolist(), "eval": torch.cat(evaluated).tolist()}
        with open(out, "w") as f:
            json.dump(result, f)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
