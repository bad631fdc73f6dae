"""A plain-PyTorch character-level GPT: the fixed reference `benchmark_gpt.py` measures the pipeline against.

Characters are tokens; the last 10% of the file is held out. 4 layers, 4 heads, width 128, context 64, batch 12,
no dropout, LayerNorm and Linear without biases, GELU MLP of 4x width, tied embeddings, AdamW (0.9, 0.99) with
weight decay 0.1 on matrices, learning rate 1e-3 with 100 warmup iterations and cosine decay to 1e-4 over 2,000
iterations, gradient clipping 1.0, fp32. The validation loss is the mean over 20 random batches at the end.
Nothing here is tuned: it is the yardstick, so it stays as it is.

    python scripts/reference_char_gpt.py --text data/tinyshakespeare/input.txt
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LAYERS, HEADS, WIDTH, CONTEXT, BATCH = 4, 4, 128, 64, 12
ITERS, WARMUP, LR, MIN_LR = 2000, 100, 1e-3, 1e-4
EVAL_BATCHES = 20


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH, bias=False), nn.LayerNorm(WIDTH, bias=False)
        self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH, bias=False), nn.Linear(WIDTH, WIDTH, bias=False)
        self.up, self.down = nn.Linear(WIDTH, 4 * WIDTH, bias=False), nn.Linear(4 * WIDTH, WIDTH, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, t, WIDTH))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class CharGPT(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab_size, WIDTH), nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(WIDTH, bias=False)
        self.head = nn.Linear(WIDTH, vocab_size, bias=False)
        self.head.weight = self.tokens.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() == 2:  # GPT-2 initialisation; residual projections scaled down by depth
                std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith(("proj.weight", "down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tokens(idx) + self.positions(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def batch(data: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(len(data) - CONTEXT - 1, (BATCH,), generator=generator)
    x = torch.stack([data[i : i + CONTEXT] for i in starts])
    y = torch.stack([data[i + 1 : i + 1 + CONTEXT] for i in starts])
    return x, y


def lr_at(it: int) -> float:
    if it < WARMUP:
        return LR * (it + 1) / WARMUP
    progress = (it - WARMUP) / (ITERS - WARMUP)
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * progress))


def run(text_file: Path, seed: int, threads: int) -> dict:
    """Train the reference for ITERS iterations; returns its wall time and held-out bits per character."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    text = text_file.read_text(encoding="utf-8")
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(data))
    train, val = data[:cut], data[cut:]
    model = CharGPT(len(chars))
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}],
                                  lr=LR, betas=(0.9, 0.99))  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for it in range(ITERS):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it)
        loss = model(*batch(train, generator))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        val_loss = sum(model(*batch(val, generator)).item() for _ in range(EVAL_BATCHES)) / EVAL_BATCHES
    wall = time.perf_counter() - start
    return {"seed": seed, "wall_s": round(wall, 1), "val_loss": round(val_loss, 4),
            "val_bits_per_char": round(val_loss / math.log(2), 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default="data/tinyshakespeare/input.txt", help="UTF-8 text file")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(run(Path(args.text), args.seed, args.threads)))


if __name__ == "__main__":
    main()
