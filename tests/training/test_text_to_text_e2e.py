"""End-to-end text-to-text: a tiny T5 learns a toy task, span-corruption and mixture pretraining, GPT
instruction tuning with its chat template, and generation from the CLI."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from pipelines.cli import main
from pipelines.config import load_config
from pipelines.errors import PipelineError
from pipelines.finetune import finetune
from pipelines.generation import instruction_prompt
from pipelines.objectives.instruct import format_prompts
from pipelines.pretrain import pretrain
from tests.conftest import REPO

T5_TOKENIZER = str(REPO / "tokenizers" / "t5-builtin")
COLOURS = ["red", "green", "blue", "black", "white", "pink"]
TINY_T5 = [
    "model.arch=t5", "model.hidden_size=64", "model.num_layers=2", "model.num_heads=4",
    f"tokenizer.path={T5_TOKENIZER}", "train.report_to=none", "train.save_steps=1000",
    "train.per_device_train_batch_size=32", "optim.learning_rate=5e-3",
]  # fmt: skip


def write_reversal(directory: Path, n_train: int = 1000, n_val: int = 48) -> tuple[Path, Path]:
    """JSONL records {instruction, input, output}: 2-3 colour words and the same words reversed."""
    rng = random.Random(0)
    paths = []
    for name, n in (("train", n_train), ("val", n_val)):
        path = directory / f"{name}.jsonl"
        with path.open("w") as f:
            for _ in range(n):
                words = rng.choices(COLOURS, k=rng.randint(2, 3))
                record = {"instruction": "reverse", "input": " ".join(words), "output": " ".join(reversed(words))}
                f.write(json.dumps(record) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def reversal_overrides(tmp_path: Path, template: str = "reverse: {input}") -> list[str]:
    train, val = write_reversal(tmp_path)
    return [
        "data.source=files", f"data.path={train}", f"data.validation_path={val}",
        f"data.input_template={json.dumps(template)}", 'data.target_template="{output}"',
        "data.block_size=24", "objective.max_target_length=12", "objective.max_new_tokens=12",
        "objective.metrics=[exact_match, rouge, chrf]", f"output_dir={tmp_path / 'run'}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reversal_run(tmp_path_factory) -> Path:
    """A tiny T5 trained to reverse 2-3 words (about 30 s on 2 CPU cores)."""
    tmp = tmp_path_factory.mktemp("t5-reverse")
    cfg = load_config(None, [*TINY_T5, *reversal_overrides(tmp), "objective.name=seq2seq",
                             "train.max_steps=600", "train.eval_steps=300"])  # fmt: skip
    finetune(cfg)
    return Path(cfg.output_dir)


def test_tiny_t5_learns_to_reverse(reversal_run):
    results = json.loads((reversal_run / "eval_results.json").read_text())
    assert results["eval_exact_match"] >= 0.9
    assert results["eval_rougeL"] >= 0.9 and results["eval_chrf"] > 80
    lines = [json.loads(line) for line in (reversal_run / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 48  # every validation record, once
    hits = sum(line["prediction"] == line["target"] for line in lines) / len(lines)
    assert hits == pytest.approx(results["eval_exact_match"])
    assert all(line["input"].startswith("reverse: ") for line in lines)


def test_t5_export_reloads_and_generates(reversal_run, capsys):
    export = reversal_run / "final"
    model = AutoModelForSeq2SeqLM.from_pretrained(str(export)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(export))
    inputs = tokenizer(["reverse: red blue", "reverse: pink black green"], return_tensors="pt", padding=True)
    output = model.generate(**inputs)  # the saved generation config: greedy, max_new_tokens 8
    assert tokenizer.batch_decode(output, skip_special_tokens=True) == ["blue red", "green black pink"]
    assert json.loads((export / "prompt_templates.json").read_text()) == {str(reversal_run.parent / "train.jsonl"):
                                                                          "reverse: {input}"}  # fmt: skip

    capsys.readouterr()
    main(["generate", str(reversal_run), "reverse: white green", "--greedy", "--max-new-tokens", "8"])
    assert capsys.readouterr().out.strip() == "green white"
    main(["generate", str(reversal_run), "reverse: white green", "--num-beams", "3", "--max-new-tokens", "8"])
    assert capsys.readouterr().out.strip() == "green white"


def test_span_pretraining_learns_and_exports(tmp_path):
    cfg = load_config(None, [
        *TINY_T5, "objective.name=span", "data.source=builtin", "data.max_documents=40", "data.block_size=64",
        "train.max_steps=40", "train.eval_steps=20", "train.eval_max_batches=2", "train.logging_steps=5",
        f"output_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    results = pretrain(cfg)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]  # fmt: skip
    assert losses[-1] < losses[0] - 1.0
    assert 0 < results["eval_token_accuracy"] <= 1 and results["eval_loss"] < losses[0]
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "run" / "final"))
    assert model.config.feed_forward_proj == "gated-gelu"


def test_mixture_trains_span_and_text_to_text_together(tmp_path):
    train, val = write_reversal(tmp_path, n_train=60, n_val=8)
    mixture = [
        {"name": "denoise", "kind": "span_corruption", "rate": 1, "data": {"source": "builtin", "max_documents": 5}},
        {"name": "reverse", "rate": 1, "data": {"source": "files", "path": str(train), "validation_path": str(val),
                                                "input_template": "reverse: {input}", "target_template": "{output}"}},
    ]  # fmt: skip
    cfg = load_config(None, [
        *TINY_T5, "objective.name=seq2seq", f"data.mixture={json.dumps(mixture)}", "data.block_size=32",
        "objective.max_target_length=8", "objective.max_new_tokens=4", "train.max_steps=6", "train.eval_steps=6",
        f"output_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    results = pretrain(cfg)
    assert results["data"]["reverse/train/examples"] == 60
    assert results["data"]["reverse/validation/examples"] == 8
    assert len((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()) == 8  # text-to-text only


def test_gpt_instruction_tuning_masks_prompt_and_saves_chat_template(tmp_path, tiny_tokenizer_dir, capsys):
    overrides = reversal_overrides(tmp_path, template="{instruction}\n{input}")
    cfg = load_config(None, [
        *overrides, "objective.name=instruct", f"tokenizer.path={tiny_tokenizer_dir}", "data.block_size=64",
        "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "train.max_steps=40",
        "train.eval_steps=40", "train.eval_max_batches=1", "train.report_to=none", "optim.learning_rate=1e-2",
    ])  # fmt: skip
    results = finetune(cfg)
    run = Path(cfg.output_dir)
    assert results["eval_loss"] < 3.0  # response tokens only: a handful of colour words

    tokenizer = AutoTokenizer.from_pretrained(str(run / "final"))
    assert "### Response:" in tokenizer.chat_template
    prompt = instruction_prompt(run, "reverse", "red blue")
    assert (
        prompt
        == format_prompts(tokenizer, ["reverse\nred blue"])[0]
        == "### Instruction:\nreverse\nred blue\n\n### Response:\n"
    )

    # pipeline("text-generation") with chat messages renders exactly this prompt.
    generator = pipeline("text-generation", model=str(run / "final"))
    torch.manual_seed(0)
    chat = generator([{"role": "user", "content": "reverse\nred blue"}], max_new_tokens=4, do_sample=False)
    direct = generator(prompt, max_new_tokens=4, do_sample=False, return_full_text=False)
    assert chat[0]["generated_text"][-1]["content"] == direct[0]["generated_text"]

    capsys.readouterr()  # drop training's output
    main(["generate", str(run), "--instruction", "reverse", "--input", "red blue", "--greedy", "--max-new-tokens", "4"])
    printed = capsys.readouterr().out
    assert "### Instruction" not in printed and printed.strip() == direct[0]["generated_text"].strip()


def test_evaluate_scores_a_file_without_touching_the_runs_predictions(reversal_run, capsys):
    own = (reversal_run / "predictions.jsonl").read_text()
    held_out = reversal_run.parent / "val.jsonl"
    main(["evaluate", str(reversal_run), "--data", str(held_out)])
    results = json.loads((reversal_run / "eval_val.json").read_text())
    lines = (reversal_run / "eval_val" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 48 and results["exact_match"] >= 0.9
    assert (reversal_run / "predictions.jsonl").read_text() == own


def test_no_repeat_ngram_size_reaches_the_evaluation_decoder(reversal_run, capsys):
    """With `objective.no_repeat_ngram_size=1` no output repeats a token, so a target that repeats one can no longer
    be matched, while the rest still are."""
    main(["evaluate", str(reversal_run), "--output", str(reversal_run / "no_repeat.json"),
          "--set", "objective.no_repeat_ngram_size=1"])  # fmt: skip
    lines = [json.loads(line) for line in (reversal_run / "no_repeat" / "predictions.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(str(reversal_run / "final"))

    def repeats_a_token(text: str) -> bool:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return len(set(ids)) < len(ids)

    assert not any(repeats_a_token(line["prediction"]) for line in lines)
    repeats = [line for line in lines if repeats_a_token(line["target"])]
    distinct = [line for line in lines if line not in repeats]
    assert repeats and not any(line["prediction"] == line["target"] for line in repeats)
    assert sum(line["prediction"] == line["target"] for line in distinct) >= 0.9 * len(distinct)


def test_templates_with_any_field_names_are_filled_by_name_or_by_position(reversal_run, tmp_path, capsys):
    export = tmp_path / "export"
    shutil.copytree(reversal_run / "final", export)
    (export / "prompt_templates.json").write_text(json.dumps({"qa.jsonl": "question: {question} context: {context}"}))
    by_name = instruction_prompt(export, fields={"context": "red blue", "question": "reverse"})
    assert by_name == instruction_prompt(export, "reverse", "red blue") == "question: reverse context: red blue"
    assert instruction_prompt(export, fields={"question": "reverse"}) == "question: reverse context:"
    with pytest.raises(PipelineError, match=r"no saved template .* field\(s\) answer: 'question: \{question\}"):
        instruction_prompt(export, fields={"answer": "x"})

    main(["generate", str(export), "--field", "question=reverse", "--field", "context=red blue", "--greedy"])
    assert capsys.readouterr().out.strip()
    with pytest.raises(SystemExit):
        main(["generate", str(export), "--field", "question"])  # NAME=VALUE, not NAME
