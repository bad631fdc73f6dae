"""Training throughput of each architecture on its objective's batches, in fp32 and bf16, eager and compiled.

Synthetic token batches shaped like each objective's (span-corrupted blocks for T5, packed blocks for
causal LMs, text-to-text pairs for the LSTM encoder-decoder), so no data set is needed: it runs on a
bare GPU machine with only torch and transformers installed.

    python scripts/benchmark_models.py --configs configs/t5/small.yaml configs/gpt/small.yaml --steps 30
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoTokenizer

from pipelines.config import load_config
from pipelines.models import build_model, model_shape
from pipelines.objectives import OBJECTIVES, auto_class_for

MODES = {"fp32": (torch.float32, False), "bf16": (torch.bfloat16, False), "bf16-compiled": (torch.bfloat16, True)}


def batches(cfg, tokenizer, batch_size: int, generator: torch.Generator):
    """Endless batches from the objective's own collator over random token ids."""
    objective = OBJECTIVES.get(cfg.objective.name)
    collate = objective.build_collator(tokenizer, cfg.objective)
    length = objective.packing(tokenizer, cfg).block_size or cfg.data.block_size if objective.packing else None
    vocab = len(tokenizer)
    while True:
        if length is not None:  # packed raw text
            examples = [{"input_ids": torch.randint(200, vocab, (length,), generator=generator).tolist()}
                        for _ in range(batch_size)]  # fmt: skip
        else:  # text-to-text pairs: inputs of block_size, targets of max_target_length
            examples = [{"input_ids": torch.randint(200, vocab, (cfg.data.block_size,), generator=generator).tolist(),
                         "labels": torch.randint(200, vocab, (cfg.objective.max_target_length,),
                                                 generator=generator).tolist()}
                        for _ in range(batch_size)]  # fmt: skip
        yield collate(examples)


def measure(cfg, tokenizer, device, dtype, compile_model: bool, steps: int, batch_size: int) -> float:
    """Training tokens (encoder + decoder) per second over `steps` steps after 5 warm-up steps."""
    torch.manual_seed(0)
    model = build_model(cfg.model, model_shape(cfg.model, tokenizer, cfg.data.block_size),
                        auto_class_for(OBJECTIVES.get(cfg.objective.name))).to(device)  # fmt: skip
    step_fn = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    stream = batches(cfg, tokenizer, batch_size, torch.Generator().manual_seed(0))
    tokens, start = 0, None
    for i in range(steps + 5):
        if i == 5:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tokens, start = 0, time.perf_counter()
        batch = {k: v.to(device) for k, v in next(stream).items() if torch.is_tensor(v)}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = step_fn(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch["input_ids"].numel() + (batch["labels"].numel() if model.config.is_encoder_decoder else 0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override for every config")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = [MODES[m] for m in args.modes]
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}")
    print("| config | arch | parameters | " + " | ".join(f"{m} tok/s" for m in args.modes) + " |")
    print("|---|---|---|" + "---|" * len(modes))
    for path in args.configs:
        cfg = load_config(path, args.overrides)
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer.path)
        figures = [measure(cfg, tokenizer, device, dtype, compiled, args.steps, args.batch_size)
                   for dtype, compiled in modes]  # fmt: skip
        size = sum(p.numel() for p in build_model(cfg.model, model_shape(cfg.model, tokenizer, cfg.data.block_size),
                   auto_class_for(OBJECTIVES.get(cfg.objective.name))).parameters())  # fmt: skip
        print(f"| {path} | {cfg.model.arch} | {size / 1e6:.2f} M | " + " | ".join(f"{f:,.0f}" for f in figures) + " |")


if __name__ == "__main__":
    main()
