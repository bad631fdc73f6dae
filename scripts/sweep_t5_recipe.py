"""Issue 10's diagnosis as a rerunnable sweep: a T5 (4 + 4 × 256 by default) on Multi30K en→de with recipe
variants, printing validation loss, source gap and token accuracy at a few steps.

The source gap is the loss with each batch's English inputs rotated by one example, minus the loss: a model that
ignores its input shows ≈ 0. Each variant is a list of `--set`-style overrides of the run config, applied to
`configs/t5/multi30k.yaml`; the model and optimizer come from the package's own builders, and the learning rate
is constant after warmup so that step counts compare directly.

    python scripts/sweep_t5_recipe.py --steps 600 \\
        --variant before "optim.learning_rate=2e-3 optim.query_lr_scale=1 optim.embedding_lr_scale=1" \\
        --variant shipped ""

Runs the variants one after another (`--device cuda` runs them on a GPU; fp32 either way).
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.config import load_config  # noqa: E402
from pipelines.models import init_model  # noqa: E402
from pipelines.tokenization import load_tokenizer  # noqa: E402
from pipelines.training.optimizer import build_optimizer  # noqa: E402

CONFIG = "configs/t5/multi30k.yaml"


def load_pairs(prefix: str, tokenizer, template: str) -> list[tuple[list[int], list[int]]]:
    """Token ids of (templated English, German) for each line pair of `prefix.en` / `prefix.de`."""
    english = Path(f"{prefix}.en").read_text(encoding="utf-8").splitlines()
    german = Path(f"{prefix}.de").read_text(encoding="utf-8").splitlines()
    inputs = tokenizer([template.format(en=line) for line in english])["input_ids"]
    return list(zip(inputs, tokenizer(german)["input_ids"], strict=True))


def collate(rows, pad_id: int, device: str) -> dict[str, torch.Tensor]:
    def pad(seqs, value):
        return torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True, padding_value=value)

    inputs, labels = pad([r[0] for r in rows], pad_id), pad([r[1] for r in rows], -100)
    batch = {"input_ids": inputs, "attention_mask": (inputs != pad_id).long(), "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model, batches) -> tuple[float, float, float]:
    """Token-weighted loss, source gap and token accuracy over `batches`."""
    model.eval()
    nll = swapped = correct = tokens = 0.0
    for batch in batches:
        scored = batch["labels"] != -100
        n = int(scored.sum())
        out = model(**batch)
        nll += out.loss.item() * n
        correct += ((out.logits.argmax(-1) == batch["labels"]) & scored).sum().item()
        rotated = {**batch, **{k: batch[k].roll(1, 0) for k in ("input_ids", "attention_mask")}}
        swapped += model(**rotated).loss.item() * n
        tokens += n
    model.train()
    return nll / tokens, (swapped - nll) / tokens, correct / tokens


def run_variant(name: str, overrides: list[str], args) -> dict[int, tuple[float, float, float]]:
    cfg = load_config(CONFIG, [f"data.path={args.data}/train", f"tokenizer.path={args.tokenizer}", *overrides])
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    train = load_pairs(f"{args.data}/train", tokenizer, cfg.data.input_template)
    val = load_pairs(f"{args.data}/val", tokenizer, cfg.data.input_template)
    size = cfg.train.per_device_train_batch_size
    val_batches = [collate(val[i : i + 32], tokenizer.pad_token_id, args.device) for i in range(0, 320, 32)]
    model = init_model(cfg.model, None, AutoModelForSeq2SeqLM, tokenizer, cfg.data.block_size).to(args.device)
    optimizer = build_optimizer(model, cfg.optim)
    peaks = [group["lr"] for group in optimizer.param_groups]
    order, results = [], {}
    model.train()
    for step in range(1, args.steps + 1):
        if len(order) < size:
            order = rng.sample(range(len(train)), len(train))
        rows, order = [train[i] for i in order[:size]], order[size:]
        for group, peak in zip(optimizer.param_groups, peaks, strict=True):
            group["lr"] = peak * min(1.0, step / max(cfg.optim.warmup_steps, 1))
        model(**collate(rows, tokenizer.pad_token_id, args.device)).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step in args.eval_at:
            results[step] = evaluate(model, val_batches)
            loss, gap, accuracy = results[step]
            print(f"{name} step {step}: loss {loss:.3f}, source gap {gap:.2f}, token accuracy {accuracy:.2f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-at", type=lambda s: {int(x) for x in s.split(",")}, default={100, 300, 600})
    parser.add_argument("--data", default="../shared/data/multi30k", help="folder with train/val .en/.de files")
    parser.add_argument("--tokenizer", default="tokenizers/t5-multi30k",
                        help=f"train it first: python -m pipelines train-tokenizer --config {CONFIG}")  # fmt: skip
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    table = {name: run_variant(name, shlex.split(overrides), args) for name, overrides in args.variant}
    steps = sorted(args.eval_at)
    print("\n| variant | " + " | ".join(f"step {s}: loss / gap / acc" for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for name, results in table.items():
        cells = [f"{results[s][0]:.3f} / {results[s][1]:.2f} / {results[s][2]:.2f}" for s in steps if s in results]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
