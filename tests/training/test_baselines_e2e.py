"""End-to-end baselines: CNN/LSTM classifiers, LSTM LM and LSTM encoder-decoder through the same loop, export,
evaluator, generator and `compare` as the transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from pipelines.cli import main
from pipelines.config import load_config
from pipelines.errors import PipelineError
from pipelines.finetune import finetune
from pipelines.pretrain import pretrain
from tests.conftest import REPO, TINY
from tests.training.test_finetune_e2e import NEGATIVE, POSITIVE, finetune_overrides, write_sentiment
from tests.training.test_text_to_text_e2e import TINY_T5, reversal_overrides, write_reversal

WORDPIECE = str(REPO / "tokenizers" / "bert-builtin")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sentiment")
    return {name: write_sentiment(root / f"{name}.tsv", n, seed) for name, n, seed in
            (("train", 480, 0), ("dev", 96, 1))}  # fmt: skip


@pytest.fixture(scope="module")
def classifier_runs(sentiment, tmp_path_factory) -> dict[str, Path]:
    runs = {}
    for arch in ("textcnn", "bilstm"):
        out = tmp_path_factory.mktemp(arch) / "run"
        cfg = load_config(None, finetune_overrides(sentiment, out, f"model.arch={arch}", f"tokenizer.path={WORDPIECE}",
                                                   "model.embedding_size=32", "model.num_filters=16"))  # fmt: skip
        finetune(cfg)
        runs[arch] = out
    return runs


@pytest.mark.parametrize("arch", ["textcnn", "bilstm"])
def test_classifier_baseline_learns_and_reloads(classifier_runs, arch):
    run = classifier_runs[arch]
    results = json.loads((run / "eval_results.json").read_text())
    assert results["eval_accuracy"] >= 0.95
    assert results["parameters"] > 0 and results["train_flops"] > 0 and results["tokens_seen"] > 0
    model = AutoModelForSequenceClassification.from_pretrained(str(run / "final"))
    assert model.config.model_type == arch and model.config.id2label == {0: "negative", 1: "positive"}


def test_a_baseline_export_loads_in_a_fresh_process_after_a_plain_import_pipelines(classifier_runs):
    """What the export's model card promises: `import pipelines`, then `pipeline()` (or an Auto class)."""
    final = classifier_runs["textcnn"] / "final"
    assert "run `import pipelines` first" in (final / "README.md").read_text()
    code = (
        "import sys, pipelines; from transformers import pipeline; "
        f"print(pipeline('text-classification', model=sys.argv[1])('{POSITIVE[0]} film')[0]['label'])"
    )
    loaded = subprocess.run([sys.executable, "-c", code, str(final)], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split()[-1] == "positive"
    unregistered = code.replace("import sys, pipelines;", "import sys;")
    without = subprocess.run([sys.executable, "-c", unregistered, str(final)], capture_output=True, text=True)
    assert without.returncode != 0  # transformers alone does not know the architecture


def test_generate_on_a_classifier_prints_every_label_with_its_score(classifier_runs, capsys):
    main(["generate", str(classifier_runs["bilstm"]), f"a {NEGATIVE[0]} film"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"a {NEGATIVE[0]} film" and lines[1].split()[1] == "negative" and len(lines) == 3
    scores = [float(line.split()[0]) for line in lines[1:]]
    assert scores[0] > 0.5 and sum(scores) == pytest.approx(1.0, abs=1e-3)


def test_lstm_lm_trains_and_generates_through_the_cli(tmp_path, tiny_tokenizer_dir, capsys):
    cfg = load_config(None, [*TINY, f"tokenizer.path={tiny_tokenizer_dir}", "model.arch=lstm_lm",
                             "model.hidden_size=64", f"output_dir={tmp_path / 'run'}"])  # fmt: skip
    results = pretrain(cfg)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]  # fmt: skip
    assert losses[-1] < losses[0] - 0.5 and "eval_bits_per_byte" in results
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "run" / "final"))
    assert model.config.model_type == "lstm_lm"

    capsys.readouterr()
    main(["generate", str(tmp_path / "run"), "Return the", "--max-new-tokens", "8", "--seed", "0"])
    first = capsys.readouterr().out
    main(["generate", str(tmp_path / "run"), "Return the", "--max-new-tokens", "8", "--seed", "0"])
    assert first.startswith("Return the") and len(first) > len("Return the\n") and capsys.readouterr().out == first


def test_lstm_seq2seq_overfits_reversal_and_generates_with_beams(tmp_path, capsys):
    overrides = [o for o in reversal_overrides(tmp_path) if not o.startswith(("data.path", "data.validation_path"))]
    train, _ = write_reversal(tmp_path, n_train=16, n_val=1)  # replaces the 1000 records written above
    cfg = load_config(None, [*TINY_T5, *overrides, f"data.path={train}", f"data.validation_path={train}",
                             "objective.name=seq2seq", "model.arch=lstm_seq2seq", "model.embedding_size=64",
                             "model.hidden_size=64", "model.num_layers=1", "train.per_device_train_batch_size=16",
                             "train.max_steps=400", "train.eval_steps=400", "optim.learning_rate=1e-2",
                             "optim.weight_decay=0"])  # fmt: skip
    results = finetune(cfg)
    assert results["eval_exact_match"] == 1.0  # the 16 training pairs, reproduced
    pairs = [json.loads(line) for line in train.read_text().splitlines()]
    capsys.readouterr()
    for extra in (["--greedy"], ["--num-beams", "3"]):
        main(["generate", str(tmp_path / "run"), f"reverse: {pairs[0]['input']}", "--max-new-tokens", "8", *extra])
        assert capsys.readouterr().out.strip() == pairs[0]["output"]


def test_baseline_refuses_an_objective_it_cannot_train(tmp_path, tiny_tokenizer_dir, sentiment):
    cfg = load_config(None, [*TINY, f"tokenizer.path={tiny_tokenizer_dir}", "model.arch=textcnn",
                             f"output_dir={tmp_path / 'run'}"])  # fmt: skip
    with pytest.raises(PipelineError, match="objective 'clm' cannot train model.arch 'textcnn'"):
        pretrain(cfg)
    cfg = load_config(None, finetune_overrides(sentiment, tmp_path / "run", "model.arch=lstm_lm",
                                               f"tokenizer.path={tiny_tokenizer_dir}"))  # fmt: skip
    with pytest.raises(PipelineError, match="has no AutoModelForSequenceClassification head"):
        finetune(cfg)


def test_compare_reports_real_runs(classifier_runs, tmp_path, tiny_tokenizer_dir, capsys):
    lm = tmp_path / "lm"
    pretrain(load_config(None, [*TINY, f"tokenizer.path={tiny_tokenizer_dir}", f"output_dir={lm}"]))
    runs = [str(classifier_runs["textcnn"]), str(classifier_runs["bilstm"]), str(lm)]
    main(["compare", *runs, "--out", str(tmp_path / "report")])
    report = (tmp_path / "report" / "report.md").read_text()
    for run in classifier_runs.values():  # the table lists each run's real accuracy
        accuracy = json.loads((run / "eval_results.json").read_text())["eval_accuracy"]
        assert f"{accuracy:.4f}" in report
    sections = report.split("\n## ")
    assert sum("| textcnn |" in s and "| bilstm |" in s for s in sections) == 1  # one table for the cls task
    assert sum("| gpt2 |" in s for s in sections) == 1
    assert not any("| gpt2 |" in s and "| textcnn |" in s for s in sections)  # tasks never share a table
    pngs = sorted((tmp_path / "report").glob("*.png"))
    assert len(pngs) == 4
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(png).ndim == 3
    with pytest.raises(SystemExit):
        main(["compare", *runs, "--out", str(tmp_path / "strict"), "--single-task"])
    assert "expected runs of one task" in capsys.readouterr().err
