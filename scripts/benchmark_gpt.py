"""Benchmark the GPT pipeline against a plain-PyTorch character-level GPT at equal wall clock.

For each seed: trains `reference_char_gpt.py` (the fixed yardstick), takes its wall time as the budget, then
runs `pretrain` through the real pipeline with `train.max_runtime` set to that budget (its warmup-stable-decay
schedule ends on a finished decay at the budget). Where a C++ compiler is at hand the model is compiled with
`torch.compile`: a short untimed run first fills inductor's on-disk cache (a one-off cost, like training the
tokenizer), and each timed run still loads its kernels from that cache within its budget. Both hold out the last
10% of the file; the pipeline trains a byte-level BPE on the rest and reports bits per byte (= bits per character
on ASCII text such as tinyshakespeare). Prints one row per seed and the mean ratio. A bare PyTorch loop (no
accelerate, no logging) over the same model, optimizer and batches, timed just before and just after the last
seed's run, gives the pipeline's overhead.

    python scripts/benchmark_gpt.py --text data/tinyshakespeare/input.txt --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from reference_char_gpt import run as run_reference  # noqa: E402 (this script's folder is on sys.path)
from torch.utils.data import DataLoader  # noqa: E402
from transformers import set_seed  # noqa: E402

from pipelines.config import load_config  # noqa: E402
from pipelines.data.prepare import prepare_lm_data  # noqa: E402
from pipelines.models import build_model, model_shape  # noqa: E402
from pipelines.objectives import OBJECTIVES, auto_class_for  # noqa: E402
from pipelines.pretrain import pretrain  # noqa: E402
from pipelines.tokenization import load_tokenizer, train_and_save  # noqa: E402
from pipelines.training.allocator import keep_freed_memory  # noqa: E402
from pipelines.training.loop import inductor_can_compile, set_training_forward  # noqa: E402
from pipelines.training.optimizer import build_optimizer, cpu_computes_bfloat16  # noqa: E402

# The best of the sweeps at 70-95 s budgets on 2 CPU cores (docs/benchmarks.md): Qwen3-style blocks (Llama's with
# QK-norm), 3 layers of width 128, Muon at 2e-2 with a warmup-stable-decay schedule, and strong weight decay because
# the run sees the training text five or six times and overfits from the third (the sixth sweep; residual dropout
# lost at fixed step counts in the tenth); NorMuon's per-neuron step won at fixed step counts on every seed (the
# eleventh); decaying over the last 30% instead of 20% won on each of six seeds, and weight decay 0.4 on four of six
# (the eighteenth); Muon's momentum 0.9 instead of 0.95 on five of six (the nineteenth); a new cut of the text each
# epoch on six of six, and then a decay over the last half on five of six (the twentieth). Any of it can be changed
# with --set.
DEFAULTS = [
    "tokenizer.vocab_size=2048",
    "data.source=files",
    "data.sample_by=document",
    "data.block_size=128",
    "data.shift_blocks=true",
    "model.arch=qwen3",
    "model.hidden_size=128",
    "model.num_layers=3",
    "model.num_heads=4",
    "model.dropout=0.0",
    "optim.name=normuon",
    "optim.muon_momentum=0.9",
    "optim.learning_rate=2e-2",
    "optim.weight_decay=0.4",
    "optim.warmup_steps=50",
    "optim.lr_scheduler_type=warmup_stable_decay",
    "optim.decay_fraction=0.5",
    "train.per_device_train_batch_size=16",
    "train.max_steps=1000000",
    "train.logging_steps=20",
    "train.eval_steps=1000000",
    "train.save_steps=1000000",
    "train.eval_max_batches=null",
    "train.report_to=none",
]
# bf16 autocast where the hardware computes bfloat16 natively: in 70 s (about the reference's time) it gave 5-42% more
# steps and 0.015-0.045 bits per byte less than fp32 on each of 3 seeds (docs/benchmarks.md, "Fifth sweep");
# where the CPU only emulates bfloat16 it would be slower, so fp32 stays there.
PRECISION = "bf16" if torch.cuda.is_available() or cpu_computes_bfloat16() else "no"
# In bf16 on a CPU, PyTorch's fused attention is slow to differentiate at this context: eager attention gave 26-66%
# more steps in 70 s and won on each of 3 seeds (docs/benchmarks.md, "Sixth sweep"); in fp32 and on GPUs the fused
# kernel is the faster one.
ATTENTION = "eager" if PRECISION == "bf16" and not torch.cuda.is_available() else "sdpa"
# torch.compile (inductor) wherever it can build kernels: in 95 s it gave 21-43% more steps and
# 0.018-0.031 bits per byte less on each of 3 seeds (docs/benchmarks.md, "Twelfth sweep").
COMPILE = inductor_can_compile()


def split_file(text_file: Path, work: Path) -> tuple[Path, Path]:
    """The first 90% of the characters for training, the rest for validation: the reference's own cut, so both
    train on the same text and are scored on the same held-out text."""
    text = text_file.read_text(encoding="utf-8")
    cut = int(0.9 * len(text))
    train, valid = work / "train.txt", work / "valid.txt"
    train.write_text(text[:cut], encoding="utf-8")
    valid.write_text(text[cut:], encoding="utf-8")
    return train, valid


def tokenizer_dir(work: Path, train_file: Path, overrides: list[str]) -> Path:
    """Where the run's tokenizer is kept in `work`: one per training text and tokenizer setting, so that a reused
    --work-dir never trains with a tokenizer made for another text or vocabulary size."""
    settings = {k: v for k, v in asdict(load_config(None, overrides).tokenizer).items() if k != "path"}
    digest = hashlib.sha256(train_file.read_bytes() + json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return work / f"tokenizer-{digest[:12]}"


def warm_compile_cache(base: list[str], work: Path) -> float:
    """Seconds for a 2-step run that compiles the model's training graph into inductor's on-disk cache, so that
    every timed run, the first seed's too, finds it there (loading it still takes about 1 s of its budget)."""
    started = time.perf_counter()
    pretrain(load_config(None, [*base, "train.max_steps=2", f"output_dir={work / 'compile-warmup'}"]), overwrite=True)
    return time.perf_counter() - started


def bare_loop(cfg, tokenizer, blocks, steps: int, warmup: int = 5) -> float:
    """Tokens/s of plain PyTorch: same model (whose forward returns the loss alone, as in training), optimizer,
    clipping, precision, compilation and batches; nothing else (the warm-up steps compile)."""
    objective = OBJECTIVES.get(cfg.objective.name)
    set_seed(cfg.seed)
    model = build_model(cfg.model, model_shape(cfg.model, tokenizer, cfg.data.block_size), auto_class_for(objective))
    set_training_forward(model, loss_only=True, compiled=cfg.train.torch_compile)
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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.mixed_precision == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch["input_ids"].numel()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default="data/tinyshakespeare/input.txt", help="UTF-8 text file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="one reference + pipeline pair per seed")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="training seconds for the pipeline (default: the reference's wall time, same seed)",
    )
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the reference first (--no-reference needs --budget: for sweeps)",
    )
    parser.add_argument("--work-dir", default=None, help="where to write the runs (default: a temp dir)")
    parser.add_argument("--bare-steps", type=int, default=60, help="timed steps of the bare PyTorch loop")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    # The allocator setting pretrain applies on CPU, from the start: the reference and the bare loop, which run in
    # this process too, then train with the same allocator on every seed.
    keep_freed_memory()
    text = Path(args.text)
    if not args.reference and args.budget is None:
        raise SystemExit("error: --no-reference needs --budget")
    if not text.is_file():
        raise SystemExit(f"error: no such file: {text}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-gpt-"))
    work.mkdir(parents=True, exist_ok=True)
    train_file, valid_file = split_file(text, work)
    recipe = [*DEFAULTS, f"train.mixed_precision={PRECISION}", f"model.attn_implementation={ATTENTION}",
              f"train.torch_compile={COMPILE}", f"data.path={train_file}",
              f"data.validation_path={valid_file}"]  # fmt: skip
    tokenizer_path = tokenizer_dir(work, train_file, [*recipe, *args.overrides])
    base = [*recipe, f"tokenizer.path={tokenizer_path}", *args.overrides]  # an explicit tokenizer.path still wins
    cfg = load_config(None, [*base, f"output_dir={work / 'run'}"])
    if not (Path(cfg.tokenizer.path) / "tokenizer.json").exists():
        train_and_save(cfg)
    compile_warmup_s = warm_compile_cache(base, work) if cfg.train.torch_compile else None

    rows = []
    for seed in args.seeds:
        reference = run_reference(text, seed, torch.get_num_threads()) if args.reference else None
        budget = args.budget or reference["wall_s"]
        run_dir = work / f"run-seed{seed}"
        cfg = load_config(None, [*base, f"seed={seed}", f"output_dir={run_dir}", f"train.max_runtime={budget}"])
        if args.bare_steps and seed == args.seeds[-1]:
            # The bare loop brackets the last run: the machine's speed can drift by 15% within minutes.
            tokenizer = load_tokenizer(cfg.tokenizer.path)
            packing = OBJECTIVES.get(cfg.objective.name).packing(tokenizer)
            blocks = prepare_lm_data(cfg.data, seed, tokenizer, packing).blocks["train"]
            bare = [bare_loop(cfg, tokenizer, blocks, args.bare_steps)]
        started = time.perf_counter()
        results = pretrain(cfg, overwrite=True)
        row = {"seed": seed}
        if reference:
            row.update(reference_wall_s=reference["wall_s"], reference_bits_per_char=reference["val_bits_per_char"])
        rows.append({
            **row,
            "pipeline_train_s": round(results["train_runtime"], 1),
            "pipeline_wall_s": round(time.perf_counter() - started, 1),
            "pipeline_steps": results["step"],
            "pipeline_tokens_seen": results["tokens_seen"],
            "pipeline_bits_per_byte": round(results["eval_bits_per_byte"], 4),
        })  # fmt: skip
        if reference:
            rows[-1]["ratio"] = round(results["eval_bits_per_byte"] / reference["val_bits_per_char"], 4)
        print(json.dumps(rows[-1]), flush=True)

    summary = {"text": str(text), "parameters": results["parameters"], "threads": torch.get_num_threads(),
               "mixed_precision": cfg.train.mixed_precision, "attn_implementation": cfg.model.attn_implementation,
               "torch_compile": cfg.train.torch_compile, "torch": torch.__version__,
               "python": sys.version.split()[0]}  # fmt: skip
    if compile_warmup_s is not None:
        summary["compile_warmup_s"] = round(compile_warmup_s, 1)
    for key in ("ratio", "reference_bits_per_char", "pipeline_bits_per_byte"):
        if key in rows[0]:
            summary[f"mean_{key}"] = round(statistics.mean(r[key] for r in rows), 4)
    if args.bare_steps:
        bare.append(bare_loop(cfg, tokenizer, blocks, args.bare_steps))
        summary.update(overhead(run_dir, results, bare))
    print(json.dumps(summary, indent=2))


def overhead(run_dir: Path, results: dict, bare: list[float]) -> dict:
    """The last run's median training tokens/s against the mean of the bare loop's timings before and after it."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    window = [r["tokens_per_second"] for r in records if "tokens_per_second" in r][1:]  # skip warm-up window
    pipeline_tps, bare_tps = statistics.median(window), statistics.mean(bare)
    return {
        "bytes_per_token": round(results["bytes_per_token"], 3),
        "pipeline_tokens_per_s": round(pipeline_tps),
        "bare_pytorch_tokens_per_s": round(bare_tps),
        "bare_pytorch_tokens_per_s_before_after": [round(t) for t in bare],
        "pipeline_overhead_pct": round(100 * (bare_tps - pipeline_tps) / bare_tps, 2),
    }


if __name__ == "__main__":
    main()
