"""End-to-end: BERT masked-LM pretraining, fill-mask, and classification fine-tuning of BERT and GPT."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, pipeline

from pipelines.cli import main
from pipelines.config import load_config
from pipelines.errors import PipelineError
from pipelines.finetune import finetune
from pipelines.pretrain import pretrain
from tests.conftest import REPO, TINY

POSITIVE = ["good", "great", "excellent", "happy", "wonderful"]
NEGATIVE = ["bad", "awful", "terrible", "sad", "poor"]
FILLER = [
    "the",
    "a",
    "this",
    "film",
    "story",
    "music",
    "actor",
    "plot",
    "was",
    "is",
    "very",
    "quite",
    "really",
    "and",
    "but",
    "it",
]


def write_sentiment(path: Path, n: int, seed: int) -> Path:
    """A clearly separable task: one sentiment word among filler words decides the label."""
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        writer.writerow(["sentence", "label"])
        for _ in range(n):
            label = rng.randrange(2)
            words = rng.choices(FILLER, k=6)
            words.insert(rng.randrange(7), rng.choice(POSITIVE if label else NEGATIVE))
            writer.writerow([" ".join(words), label])
    return path


@pytest.fixture(scope="module")
def wordpiece_dir() -> Path:
    """The committed WordPiece tokenizer: WordPiece training is not deterministic run to run (see
    tests/test_tokenization_wordpiece.py), and a fixed vocabulary keeps these tests reproducible."""
    return REPO / "tokenizers" / "bert-builtin"


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, wordpiece_dir) -> Path:
    out = tmp_path_factory.mktemp("bert") / "run"
    cfg = load_config(None, [*TINY, "model.arch=bert", "objective.name=mlm", "objective.whole_word_mask=true",
                             "tokenizer.vocab_size=8192",
                             f"tokenizer.path={wordpiece_dir}", f"output_dir={out}", "train.max_steps=150",
                             "optim.learning_rate=1e-3"])  # post-LayerNorm BERT collapses at 1e-2  # fmt: skip
    pretrain(cfg)
    return out


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sentiment")
    return {name: write_sentiment(root / f"{name}.tsv", n, seed) for name, n, seed in
            (("train", 480, 0), ("dev", 96, 1), ("test", 96, 2))}  # fmt: skip


def finetune_overrides(sentiment, out: Path, *extra: str) -> list[str]:
    return [
        *TINY, "objective.name=cls", "objective.metrics=[accuracy,f1,matthews_correlation]",
        "data.source=files", f"data.path={sentiment['train']}", f"data.validation_path={sentiment['dev']}",
        "data.text_column=sentence", "data.label_map={0: negative, 1: positive}", "data.max_documents=null",
        "optim.learning_rate=3e-3", "train.max_steps=120", "train.eval_steps=40", "train.save_steps=40",
        "train.logging_steps=10",
        f"output_dir={out}", *extra,
    ]  # fmt: skip


def test_bert_mlm_loss_falls_and_fill_mask_works(bert_run, capsys):
    records = [json.loads(line) for line in (bert_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5  # noise is ~0.05
    results = json.loads((bert_run / "eval_results.json").read_text())
    assert 0 < results["eval_token_accuracy"] <= 1 and "eval_bits_per_byte" not in results

    model = AutoModelForMaskedLM.from_pretrained(bert_run / "final")
    assert model.config.model_type == "bert"
    fill = pipeline("fill-mask", model=str(bert_run / "final"))
    candidates = fill("return the [MASK] of the list.", top_k=3)
    assert len(candidates) == 3 and all(0 <= c["score"] <= 1 for c in candidates)

    main(["generate", str(bert_run), "return the [MASK] of the list.", "--top-k", "4"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "return the [MASK] of the list." and len(lines) == 5
    scores = [float(line.split()[0]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True)


def test_modernbert_pretrains_fills_masks_and_finetunes(wordpiece_dir, sentiment, tmp_path, capsys):
    out = tmp_path / "modernbert"
    cfg = load_config(None, [*TINY, "model.arch=modernbert", "objective.name=mlm", "objective.whole_word_mask=true",
                             "tokenizer.vocab_size=8192", f"tokenizer.path={wordpiece_dir}", f"output_dir={out}",
                             "train.max_steps=100", "optim.learning_rate=1e-3"])  # fmt: skip
    pretrain(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0
    assert AutoModelForMaskedLM.from_pretrained(out / "final").config.model_type == "modernbert"
    candidates = pipeline("fill-mask", model=str(out / "final"))("return the [MASK] of the list.", top_k=3)
    assert len(candidates) == 3 and all(0 <= c["score"] <= 1 for c in candidates)

    tuned = tmp_path / "sst"
    finetune(load_config(None, finetune_overrides(sentiment, tuned, f"model.init_from={out}")))
    assert json.loads((tuned / "eval_results.json").read_text())["eval_accuracy"] >= 0.9
    check_export(tuned, sentiment["test"], capsys)


def check_export(out: Path, test_file: Path, capsys) -> None:
    """Label names survive export; `evaluate` on an unseen file agrees with `pipeline("text-classification")`."""
    model = AutoModelForSequenceClassification.from_pretrained(out / "final")
    assert model.config.id2label == {0: "negative", 1: "positive"}
    classify = pipeline("text-classification", model=str(out / "final"))
    main(["evaluate", str(out), "--data", str(test_file)])
    report = json.loads((out / f"eval_{test_file.stem}.json").read_text())
    with test_file.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    predicted = [p["label"] for p in classify([r["sentence"] for r in rows])]
    expected = ["positive" if r["label"] == "1" else "negative" for r in rows]
    assert report["examples"] == len(rows)
    assert report["accuracy"] == pytest.approx(
        sum(p == e for p, e in zip(predicted, expected, strict=True)) / len(rows)
    )


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_finetuning_reaches_high_accuracy_and_keeps_label_names(arch, sentiment, tiny_tokenizer_dir, tmp_path, capsys):
    # From scratch: a 150-step tiny masked LM is not a reliable encoder (some seeds collapse it), so the
    # accuracy bar is for the architectures themselves; the pretrained path is checked below.
    tokenizer = REPO / "tokenizers" / "bert-builtin" if arch == "bert" else tiny_tokenizer_dir
    lr = "1e-3" if arch == "bert" else "3e-3"  # post-LayerNorm BERT is unstable at GPT's rate
    out = tmp_path / "cls"
    results = finetune(load_config(None, finetune_overrides(
        sentiment, out, f"model.arch={arch}", f"tokenizer.path={tokenizer}", "tokenizer.vocab_size=8192",
        f"optim.learning_rate={lr}", "optim.warmup_steps=20", "train.max_steps=200",
    )))  # fmt: skip
    assert results["eval_accuracy"] >= 0.95, results
    assert results["labels"] == ["negative", "positive"]
    classify = pipeline("text-classification", model=str(out / "final"))
    assert classify("the film was really wonderful")[0]["label"] == "positive"
    assert classify("the plot was terrible and sad")[0]["label"] == "negative"
    check_export(out, sentiment["test"], capsys)


def test_finetuning_from_a_pretrained_export(bert_run, sentiment, tmp_path, capsys):
    out = tmp_path / "from-bert"
    # batches grouped by length: integer class labels beside the token lists
    overrides = finetune_overrides(sentiment, out, f"model.init_from={bert_run}", "train.group_by_length=true")
    results = finetune(load_config(None, overrides))
    assert results["step"] == 120 and results["labels"] == ["negative", "positive"]
    assert "fine-tuned from" in (out / "final" / "README.md").read_text()
    check_export(out, sentiment["test"], capsys)


def test_early_stopping_stops_and_restores_the_best(sentiment, bert_run, tmp_path):
    cfg = load_config(None, finetune_overrides(sentiment, tmp_path / "es", f"model.init_from={bert_run}",
                                               "train.max_steps=400", "train.eval_steps=5",
                                               "train.early_stopping_patience=2",
                                               "train.metric_for_best_model=accuracy"))  # fmt: skip
    results = finetune(cfg)
    records = [json.loads(line) for line in (tmp_path / "es" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_accuracy" in r]
    assert results["step"] < 400 and results["step"] == evals[-1]["step"]
    assert results["eval_accuracy"] == max(r["eval_accuracy"] for r in evals)  # the best, not the last


def test_bad_classification_input_is_refused_before_training(sentiment, bert_run, tiny_tokenizer_dir, tmp_path,
                                                             capsys):  # fmt: skip
    def error_of(*overrides) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["finetune", *sum((["--set", o] for o in overrides), [])])
        assert exit_info.value.code == 2
        return capsys.readouterr().err

    base = finetune_overrides(sentiment, tmp_path / "bad", f"model.init_from={bert_run}")
    assert "labels not in the label set: 0, 1" in error_of(*base, "data.label_map=null", "data.labels=[neg,pos]")
    assert "no column 'premise' (set data.text_pair_column)" in error_of(*base, "data.text_pair_column=premise")
    assert "no column 'stars' (set data.label_column)" in error_of(*base, "data.label_column=stars")
    assert not (tmp_path / "bad").exists()

    # A GPT export has no masked-LM head; an export whose tokenizer overflows its embeddings is refused.
    gpt = tmp_path / "gpt"
    pretrain(load_config(None, [*TINY, f"tokenizer.path={tiny_tokenizer_dir}", f"output_dir={gpt}",
                                "train.max_steps=2"]))  # fmt: skip
    with pytest.raises(PipelineError, match="cannot train model.arch .gpt2. \\(causal family\\)"):
        pretrain(load_config(None, [*TINY, "objective.name=mlm", "model.arch=bert", f"model.init_from={gpt}",
                                    f"output_dir={tmp_path / 'x'}"]))  # fmt: skip
    broken = tmp_path / "broken"
    shutil.copytree(gpt / "final", broken)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(bert_run) / "final" / name, broken / name)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config | {"vocab_size": 8}))
    with pytest.raises(PipelineError, match="embeddings; use the tokenizer the model was trained with"):
        finetune(load_config(None, finetune_overrides(sentiment, tmp_path / "y", f"model.init_from={broken}")))


def test_two_process_finetuning(sentiment, bert_run, tmp_path):
    sets = finetune_overrides(sentiment, tmp_path / "ddp", f"model.init_from={bert_run}", "train.max_steps=20",
                              "train.per_device_train_batch_size=4")  # fmt: skip
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "pipelines", "finetune", *sum((["--set", s] for s in sets), [])]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "ddp" / "eval_results.json").read_text())
    assert results["eval_examples"] == 96  # every validation example once: no duplicated padding samples
    assert (tmp_path / "ddp" / "final" / "model.safetensors").is_file()


def test_a_block_size_beyond_the_exports_positions_is_refused_before_any_data_work(bert_run, sentiment, tmp_path,
                                                                                     monkeypatch):  # fmt: skip
    import pipelines.tasks.labelled

    def no_data_work(*args, **kwargs):
        raise AssertionError("the data was prepared before the model check")

    monkeypatch.setattr(pipelines.tasks.labelled, "prepare_classification_data", no_data_work)
    cfg = load_config(None, finetune_overrides(sentiment, tmp_path / "run", f"model.init_from={bert_run}",
                                               "data.block_size=64"))  # fmt: skip
    with pytest.raises(PipelineError, match=r"data.block_size is 64 but the model at .* reads at most 32 tokens"):
        finetune(cfg)
