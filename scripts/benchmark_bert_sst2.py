"""Benchmark BERT pretraining + SST-2 fine-tuning against the same model fine-tuned without pretraining.

1. Pretraining text: the built-in corpus plus the SST-2 training sentences (labels dropped).
2. A lower-cased WordPiece tokenizer trained on that text.
3. Masked-LM pretraining of a BERT-Tiny-shaped model (2 layers, width 128) for a wall-clock budget:
   a short calibration run through the pipeline measures steps/s, which sets `max_steps`.
4. Fine-tuning on SST-2 train, scored on SST-2 dev, from the pretrained export and from scratch.

    python scripts/benchmark_bert_sst2.py --sst2 ../shared/data/sst2 --pretrain-minutes 20
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from accelerate.state import AcceleratorState, GradientState  # noqa: E402

from pipelines.cli import run_train_tokenizer  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from pipelines.data.builtin import iter_builtin_documents  # noqa: E402
from pipelines.finetune import finetune  # noqa: E402
from pipelines.pretrain import pretrain  # noqa: E402

PRETRAIN = [
    "model.arch=bert", "model.hidden_size=128", "model.num_layers=2", "model.num_heads=2", "model.dropout=0.1",
    "objective.name=mlm", "objective.whole_word_mask=true",
    "tokenizer.kind=wordpiece", "tokenizer.lowercase=true", "tokenizer.vocab_size=8192",
    "data.source=files", "data.block_size=128", "data.validation_fraction=0.01",
    "optim.learning_rate=1e-3", "optim.warmup_steps=200", "optim.weight_decay=0.01",
    "train.per_device_train_batch_size=64", "train.report_to=none", "train.logging_steps=50",
]  # fmt: skip
FINETUNE = [
    "objective.name=cls", "objective.metrics=[accuracy,f1]", "data.source=files", "data.text_column=sentence",
    "data.label_map={0: negative, 1: positive}", "data.labels=[negative,positive]", "data.block_size=128",
    "optim.weight_decay=0.01", "optim.warmup_steps=200", "train.per_device_train_batch_size=32",
    "train.per_device_eval_batch_size=128", "train.max_steps=6000", "train.eval_steps=500",
    "train.save_steps=3000", "train.eval_max_batches=null", "train.early_stopping_patience=4",
    "train.metric_for_best_model=accuracy", "train.report_to=none", "train.logging_steps=100",
]  # fmt: skip


def fresh_state() -> None:
    """Each run in this process builds its own Accelerator."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def write_corpus(sst2: Path, path: Path) -> int:
    """Built-in documents and SST-2 training sentences, one JSON record each."""
    with (sst2 / "train.tsv").open(newline="") as f:
        sentences = [row["sentence"].strip() for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    records = [doc["text"] for doc in iter_builtin_documents()] + sentences
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in records))
    return len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2", default="../shared/data/sst2", help="folder with GLUE SST-2 train.tsv and dev.tsv")
    parser.add_argument("--pretrain-minutes", type=float, default=20.0, help="wall-clock budget for pretraining")
    parser.add_argument("--work-dir", default=None, help="where runs go (default: a temp dir)")
    args = parser.parse_args()

    sst2 = Path(args.sst2)
    if not (sst2 / "train.tsv").is_file():
        raise SystemExit(f"error: no SST-2 train.tsv in {sst2}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-bert-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    documents = write_corpus(sst2, corpus)
    base = [*PRETRAIN, f"data.path={corpus}", f"tokenizer.path={work / 'tokenizer'}"]
    if not (work / "tokenizer" / "tokenizer.json").exists():
        run_train_tokenizer(load_config(None, base))

    # Calibrate steps/s through the real pipeline, then pretrain for the budget.
    calibration = load_config(None, [*base, f"output_dir={work / 'calibrate'}", "train.max_steps=60",
                                     "train.logging_steps=20", "train.eval_steps=1000"])  # fmt: skip
    pretrain(calibration, overwrite=True)
    fresh_state()
    records = [json.loads(line) for line in (work / "calibrate" / "metrics.jsonl").read_text().splitlines()]
    tokens_per_second = statistics.median(r["tokens_per_second"] for r in records if "tokens_per_second" in r)
    steps = int(args.pretrain_minutes * 60 * 0.92 * tokens_per_second / (64 * 128))
    every = max(1, steps // 5)
    cfg = load_config(None, [*base, f"output_dir={work / 'bert'}", f"train.max_steps={steps}",
                             f"train.eval_steps={every}", f"train.save_steps={every}"])  # fmt: skip
    started = time.perf_counter()
    pretrained = pretrain(cfg, overwrite=True)
    pretrain_seconds = time.perf_counter() - started
    fresh_state()

    data = [f"data.path={sst2 / 'train.tsv'}", f"data.validation_path={sst2 / 'dev.tsv'}"]
    runs = {
        "pretrained": [f"model.init_from={work / 'bert'}", "optim.learning_rate=2e-4"],
        "scratch": [f"tokenizer.path={work / 'tokenizer'}", "model.arch=bert", "model.hidden_size=128",
                    "model.num_layers=2", "model.num_heads=2", "model.dropout=0.1", "optim.learning_rate=5e-4"],
    }  # fmt: skip
    summary = {
        "pretraining": {
            "documents": documents, "steps": pretrained["step"], "tokens": pretrained["tokens_seen"],
            "seconds": round(pretrain_seconds), "parameters": pretrained["parameters"],
            "mlm_loss": round(pretrained["eval_loss"], 4), "mlm_accuracy": round(pretrained["eval_token_accuracy"], 4),
        },
    }  # fmt: skip
    for name, extra in runs.items():
        started = time.perf_counter()
        result = finetune(load_config(None, [*FINETUNE, *data, *extra, f"output_dir={work / f'sst2-{name}'}"]),
                          overwrite=True)  # fmt: skip
        fresh_state()
        summary[f"sst2_{name}"] = {
            "dev_accuracy": round(result["eval_accuracy"], 4), "dev_f1": round(result["eval_f1"], 4),
            "steps": result["step"], "seconds": round(time.perf_counter() - started),
        }  # fmt: skip
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
