"""Benchmark the GPT pipeline on a text file for a fixed wall-clock budget.

Holds out the last 10% of the file for validation, trains a byte-level BPE on the rest, calibrates
how many optimizer steps fit in the budget, runs `pretrain` through the real pipeline, and prints
train tokens/s, validation loss and validation bits per byte. Then it times a bare PyTorch loop
(no accelerate, no logging) over the same model shape and the same batches, and prints the
pipeline's throughput overhead.

    python scripts/benchmark_gpt.py --text ../shared/data/tinyshakespeare/input.txt --budget 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import set_seed  # noqa: E402

from pipelines.cli import run_train_tokenizer  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.data.prepare import prepare_lm_data  # noqa: E402
from pipelines.models import build_model, model_shape  # noqa: E402
from pipelines.objectives import OBJECTIVES, auto_class_for  # noqa: E402
from pipelines.pretrain import pretrain  # noqa: E402
from pipelines.tokenization import load_tokenizer  # noqa: E402
from pipelines.training.optimizer import build_optimizer  # noqa: E402

# Tuned for ~200 s on 2 CPU cores (a sweep at 100 s: Llama-style blocks beat GPT-2 blocks, width 128 beat
# 192, and a high learning rate mattered most); any of it can be changed with --set.
DEFAULTS = [
    "tokenizer.vocab_size=2048",
    "data.source=files",
    "data.sample_by=document",
    "data.block_size=128",
    "model.arch=llama",
    "model.hidden_size=128",
    "model.num_layers=4",
    "model.num_heads=4",
    "model.dropout=0.0",
    "optim.learning_rate=5e-3",
    "optim.warmup_steps=50",
    "train.per_device_train_batch_size=16",
    "train.logging_steps=20",
    "train.eval_max_batches=null",
    "train.report_to=none",
]


def split_file(text_file: Path, work: Path) -> tuple[Path, Path]:
    """First 90% of the lines for training, the last 10% for validation."""
    lines = text_file.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = int(len(lines) * 0.9)
    train, valid = work / "train.txt", work / "valid.txt"
    train.write_text("".join(lines[:cut]), encoding="utf-8")
    valid.write_text("".join(lines[cut:]), encoding="utf-8")
    return train, valid


def bare_loop(cfg, tokenizer, blocks, steps: int, warmup: int = 5) -> float:
    """Tokens/s of plain PyTorch: same model, optimizer, clipping and batches; nothing else."""
    objective = OBJECTIVES.get(cfg.objective.name)
    set_seed(cfg.seed)
    model = build_model(cfg.model, model_shape(cfg.model, tokenizer, cfg.data.block_size), auto_class_for(objective))
    model.train()
    optimizer = build_optimizer(model, cfg.optim)
    collator = objective.build_collator(tokenizer, cfg.objective)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(blocks, batch_size=cfg.train.per_device_train_batch_size, shuffle=True,
                        drop_last=True, collate_fn=collator, generator=generator)  # fmt: skip
    batches = iter(loader)
    tokens, start = 0, None
    for i in range(warmup + steps):
        if i == warmup:
            start, tokens = time.perf_counter(), 0
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch["input_ids"].numel()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default="../shared/data/tinyshakespeare/input.txt", help="UTF-8 text file")
    parser.add_argument("--budget", type=float, default=200.0, help="wall-clock seconds for pipeline training")
    parser.add_argument("--work-dir", default=None, help="where to write the run (default: a temp dir)")
    parser.add_argument("--bare-steps", type=int, default=60, help="timed steps of the bare PyTorch loop")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    text = Path(args.text)
    if not text.is_file():
        raise SystemExit(f"error: no such file: {text}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-gpt-"))
    work.mkdir(parents=True, exist_ok=True)
    train_file, valid_file = split_file(text, work)
    base = [*DEFAULTS, f"data.path={train_file}", f"data.validation_path={valid_file}",
            f"tokenizer.path={work / 'tokenizer'}", *args.overrides]  # fmt: skip

    cfg = load_config(None, [*base, f"output_dir={work / 'run'}"])
    if not (work / "tokenizer" / "tokenizer.json").exists():
        run_train_tokenizer(cfg)
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    data = prepare_lm_data(cfg.data, cfg.seed, tokenizer, OBJECTIVES.get(cfg.objective.name).packing(tokenizer))

    # Calibrate: steps/s of the bare loop, discounted for evaluation and checkpoint time.
    calib = bare_loop(cfg, tokenizer, data.blocks["train"], steps=15, warmup=3)
    tokens_per_step = cfg.train.per_device_train_batch_size * cfg.data.block_size
    max_steps = max(50, int(args.budget * 0.93 * calib / tokens_per_step))
    every = max(1, max_steps // 4)
    cfg = load_config(None, [*base, f"output_dir={work / 'run'}", f"train.max_steps={max_steps}",
                             f"train.eval_steps={every}", f"train.save_steps={every}"])  # fmt: skip

    started = time.perf_counter()
    results = pretrain(cfg, overwrite=True)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    window = [r["tokens_per_second"] for r in records if "tokens_per_second" in r][1:]  # skip warm-up window
    pipeline_tps = statistics.median(window)

    bare_tps = bare_loop(cfg, tokenizer, data.blocks["train"], steps=args.bare_steps)
    summary = {
        "text": str(text),
        "budget_s": args.budget,
        "wall_s": round(wall, 1),
        "train_runtime_s": round(results["train_runtime"], 1),
        "max_steps": max_steps,
        "parameters": results["parameters"],
        "tokens_seen": results["tokens_seen"],
        "bytes_per_token": round(data.bytes_per_token["validation"], 3),
        "pipeline_tokens_per_s": round(pipeline_tps),
        "bare_pytorch_tokens_per_s": round(bare_tps),
        "pipeline_overhead_pct": round(100 * (bare_tps - pipeline_tps) / bare_tps, 2),
        "val_loss": round(results["eval_loss"], 4),
        "val_bits_per_byte": round(results["eval_bits_per_byte"], 4),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
