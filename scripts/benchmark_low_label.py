"""Does pretraining pay off? Self-pretraining on SST-2's own sentences, then fine-tuning on few labels.

1. Pretraining text: the SST-2 training sentences with their labels dropped (`--with-builtin` adds the
   built-in corpus, `--extra-text` any text files); the pretraining objective is scored on the dev
   sentences' text (never trained on).
2. A tokenizer trained on that text (WordPiece for the BERT family, byte-level BPE for the GPT family).
3. Pretraining (masked LM for `--family bert`, next-token LM for `--family gpt`) for `--pretrain-minutes`
   of training time; its warmup-stable-decay schedule ends on a finished decay at the budget.
4. For each label count and seed: fine-tuning on a stratified subset of that many SST-2 training labels
   (`data.max_train_examples`) from the pretrained export, from scratch (same architecture and tokenizer),
   and TextCNN (same tokenizer), each scored on the whole SST-2 dev set.

Prints one JSON line per run and a table of means, and writes `results.jsonl`, `table.md` and `plot.png`
(dev accuracy against label count, one line per model) into `--out`.

    python scripts/benchmark_low_label.py --family bert --sst2 data/sst2 --out reports/low-label/bert
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

from matplotlib.figure import Figure  # noqa: E402

from pipelines.config import load_config  # noqa: E402
from pipelines.data.builtin import iter_builtin_documents  # noqa: E402
from pipelines.finetune import finetune  # noqa: E402
from pipelines.pretrain import pretrain  # noqa: E402
from pipelines.tokenization import train_and_save  # noqa: E402

FAMILIES = {
    "bert": {
        "tokenizer": ["tokenizer.kind=wordpiece", "tokenizer.lowercase=true", "tokenizer.vocab_size=8192"],
        "model": ["model.arch=modernbert", "model.hidden_size=128", "model.num_layers=2", "model.num_heads=2"],
        "pretrain": ["objective.name=mlm", "objective.whole_word_mask=true", "model.dropout=0.0",
                     "optim.learning_rate=1e-3", "optim.weight_decay=0.01"],
        "rates": {"pretrained": 1e-3, "scratch": 5e-4},
    },
    "gpt": {
        "tokenizer": ["tokenizer.kind=byte_bpe", "tokenizer.vocab_size=8192"],
        "model": ["model.arch=llama", "model.hidden_size=128", "model.num_layers=2", "model.num_heads=2"],
        "pretrain": ["objective.name=clm", "model.dropout=0.0", "optim.name=muon", "optim.learning_rate=1e-2"],
        "rates": {"pretrained": 3e-4, "scratch": 5e-4},
    },
}  # fmt: skip
PRETRAIN = [
    "data.source=files", "data.block_size=128",
    "optim.lr_scheduler_type=warmup_stable_decay", "optim.warmup_steps=100", "train.max_steps=10000000",
    "train.per_device_train_batch_size=32", "train.eval_steps=1000", "train.save_steps=1000",
    "train.eval_max_batches=null", "train.report_to=none", "train.logging_steps=50",
]  # fmt: skip
FINETUNE = [
    "objective.name=cls", "objective.metrics=[accuracy,f1]", "data.source=files", "data.text_column=sentence",
    "data.label_map={0: negative, 1: positive}", "data.labels=[negative,positive]", "data.block_size=128",
    "optim.weight_decay=0.01", "train.per_device_train_batch_size=32", "train.per_device_eval_batch_size=128",
    "train.eval_max_batches=null", "train.early_stopping_patience=4", "train.metric_for_best_model=accuracy",
    "train.report_to=none", "train.logging_steps=50",
]  # fmt: skip
TEXTCNN = ["model.arch=textcnn", "model.embedding_size=128", "model.kernel_sizes=[3,4,5]", "model.num_filters=100",
           "model.dropout=0.5", "optim.learning_rate=1e-3", "optim.weight_decay=0.0"]  # fmt: skip


def schedule(labels: int | None) -> list[str]:
    """Steps, warmup and evaluation interval for a label count: about 30 epochs of 500 labels, 15 of 2,000,
    0.7 of all 67k; early stopping on dev accuracy ends most runs sooner."""
    steps, every = {500: (500, 50), 2000: (1000, 100)}.get(labels, (1500, 250))
    return [f"train.max_steps={steps}", f"train.eval_steps={every}", f"train.save_steps={steps}",
            f"optim.warmup_steps={steps // 10}"]  # fmt: skip


def sentences(tsv: Path) -> list[str]:
    with tsv.open(newline="") as f:
        return [row["sentence"].strip() for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def extra_texts(paths: list[str]) -> list[str]:
    """A .tsv's `sentence` column (e.g. SST-2's unlabelled test.tsv); any other file, one text per non-empty line."""
    texts = []
    for path in map(Path, paths):
        if path.suffix == ".tsv":
            texts += sentences(path)
        else:
            texts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts


def write_texts(path: Path, texts: list[str]) -> int:
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return len(texts)


def run_pretraining(family: dict, args, work: Path) -> dict:
    """Pretrain on the training sentences; score on the dev sentences' text. (A held-out share of the training
    set would leak: GLUE's SST-2 training examples are overlapping phrases of the same sentences.)"""
    sst2 = Path(args.sst2)
    texts = sentences(sst2 / "train.tsv") + ([d["text"] for d in iter_builtin_documents()] if args.with_builtin else [])
    texts += extra_texts(args.extra_text)
    documents = write_texts(work / "corpus.jsonl", texts)
    write_texts(work / "dev-text.jsonl", sentences(sst2 / "dev.tsv"))
    base = [*PRETRAIN, *family["tokenizer"], *family["model"], *family["pretrain"],
            f"data.path={work / 'corpus.jsonl'}", f"data.validation_path={work / 'dev-text.jsonl'}",
            f"tokenizer.path={work / 'tokenizer'}", f"output_dir={work / 'pretrained'}",
            f"train.max_runtime={args.pretrain_minutes * 60}", *args.pretrain_set]  # fmt: skip
    cfg = load_config(None, base)
    if not (work / "tokenizer" / "tokenizer.json").exists():
        train_and_save(cfg)
    results = pretrain(cfg, overwrite=True)
    summary = {"documents": documents, "steps": results["step"], "tokens": results["tokens_seen"],
               "train_seconds": round(results["train_runtime"]), "parameters": results["parameters"]}  # fmt: skip
    for key in ("loss", "token_accuracy", "bits_per_byte"):
        if f"eval_{key}" in results:
            summary[f"dev_text_{key}"] = round(results[f"eval_{key}"], 4)
    return summary


def finetune_runs(family: dict, args, work: Path) -> list[dict]:
    sst2 = Path(args.sst2)
    data = [f"data.path={sst2 / 'train.tsv'}", f"data.validation_path={sst2 / 'dev.tsv'}"]
    rates = family["rates"]
    models = {
        "pretrained": [f"model.init_from={work / 'pretrained'}", f"optim.learning_rate={rates['pretrained']}"],
        "scratch": [f"tokenizer.path={work / 'tokenizer'}", *family["model"], "model.dropout=0.1",
                    f"optim.learning_rate={rates['scratch']}"],
        "textcnn": [f"tokenizer.path={work / 'tokenizer'}", *TEXTCNN],
    }  # fmt: skip
    rows = []
    for labels in args.labels:
        count = None if labels == "all" else int(labels)
        subset = [] if count is None else [f"data.max_train_examples={count}"]
        for seed in args.seeds:
            for name, extra in models.items():
                out = work / f"{name}-{labels}-seed{seed}"
                cfg = load_config(None, [*FINETUNE, *data, *subset, *schedule(count), *extra, f"seed={seed}",
                                         f"output_dir={out}", *args.finetune_set])  # fmt: skip
                started = time.perf_counter()
                result = finetune(cfg, overwrite=True)
                rows.append({"model": name, "labels": labels, "seed": seed,
                             "dev_accuracy": round(100 * result["eval_accuracy"], 2), "steps": result["step"],
                             "seconds": round(time.perf_counter() - started)})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict], labels: list[str]) -> str:
    """Mean ± standard deviation of dev accuracy over seeds, one row per model, one column per label count."""
    lines = ["| model | " + " | ".join(f"{n} labels" for n in labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for n in labels:
            scores = [r["dev_accuracy"] for r in rows if r["model"] == model and r["labels"] == n]
            spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
            cells.append(f"{statistics.mean(scores):.1f} ± {spread:.1f} ({len(scores)})" if scores else "—")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], labels: list[str], title: str, path: Path) -> None:
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for model in dict.fromkeys(r["model"] for r in rows):
        points = [(n, [r["dev_accuracy"] for r in rows if r["model"] == model and r["labels"] == n]) for n in labels]
        points = [(i, statistics.mean(s)) for i, (_, s) in enumerate(points) if s]
        axes.plot([i for i, _ in points], [m for _, m in points], marker="o", label=model)
    axes.set_xticks(range(len(labels)), [f"{n}" for n in labels])
    axes.set(xlabel="SST-2 training labels", ylabel="dev accuracy (%, mean over seeds)", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=sorted(FAMILIES), default="bert")
    parser.add_argument("--sst2", default="data/sst2", help="folder with GLUE SST-2 train.tsv and dev.tsv")
    parser.add_argument("--pretrain-minutes", type=float, default=30.0, help="training-time budget for pretraining")
    parser.add_argument("--with-builtin", action="store_true", help="add the built-in corpus to the pretraining text")
    parser.add_argument("--extra-text", nargs="+", default=[], metavar="FILE",
                        help="more pretraining text: a .tsv's 'sentence' column, else one text per line")  # fmt: skip
    parser.add_argument(
        "--labels",
        nargs="*",
        default=["500", "2000", "all"],
        help="label counts ('all': every one); none: pretrain only (recipe sweeps)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--work-dir", default=None, help="where runs go (default: a temp dir); reuses a pretraining")
    parser.add_argument("--out", default="reports/low-label", help="folder for results.jsonl, table.md and plot.png")
    parser.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if not (Path(args.sst2) / "train.tsv").is_file():
        raise SystemExit(f"error: no SST-2 train.tsv in {args.sst2}")
    if missing := [path for path in args.extra_text if not Path(path).is_file()]:
        raise SystemExit(f"error: --extra-text: no such file: {', '.join(missing)}")
    if any(n != "all" and not n.isdigit() for n in args.labels):
        raise SystemExit(f"error: --labels takes counts or 'all', got {args.labels}")

    family = FAMILIES[args.family]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix=f"low-label-{args.family}-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (work / "pretrained" / "final" / "config.json").is_file():
        pretraining = json.loads((work / "pretraining.json").read_text())
    else:
        pretraining = run_pretraining(family, args, work)
        (work / "pretraining.json").write_text(json.dumps(pretraining))
    print(json.dumps({"pretraining": pretraining}), flush=True)
    if not args.labels:
        return
    new = finetune_runs(family, args, work)
    rows = merged(out / "results.jsonl", pretraining, new)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [{"pretraining": pretraining}, *rows]))
    labels = sorted({r["labels"] for r in rows}, key=lambda n: float("inf") if n == "all" else int(n))
    text = table(rows, labels)
    (out / "table.md").write_text(text)
    minutes = pretraining["train_seconds"] / 60
    plot(rows, labels, f"SST-2, {args.family} family, {minutes:.0f} min of pretraining", out / "plot.png")
    print(text)


def merged(path: Path, pretraining: dict, new: list[dict]) -> list[dict]:
    """Earlier rows of the same pretraining in `path`, with this invocation's rows replacing any of the same
    model, label count and seed: a curve can be extended one label count or seed at a time."""
    if not path.is_file():
        return new
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    if lines[0].get("pretraining") != pretraining:
        return new
    fresh = {(r["model"], r["labels"], r["seed"]) for r in new}
    return [r for r in lines[1:] if (r["model"], r["labels"], r["seed"]) not in fresh] + new


if __name__ == "__main__":
    main()
