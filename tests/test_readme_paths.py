"""The README's and docs/ pages' commands, run in order as a newcomer would, with tiny step counts.

`test_docs_commands.py` checks that every documented command parses and loads its config; this runs them: the
README's path (each family from pretraining to a fine-tuned model and generation, then "your own data" on small
files made here), then the guide's and the benchmark page's commands, in a scratch directory that holds the
repository's configs and tokenizers. Commands that need the public data sets run when `data/` is there (`python
-m pipelines fetch-data`); commands that download (`fetch-data`), launch several processes or repeat the
quickstart are left to their own tests, and the benchmark scripts to `test_scripts.py`.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shlex
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.config import load_config
from tests.conftest import DATA, REPO
from tests.test_docs_commands import shell_lines

TINY_RUN = ["train.max_steps=2", "train.eval_steps=2", "train.save_steps=2", "train.eval_max_batches=1",
            "train.logging_steps=1", "train.report_to=none", "data.max_documents=400",
            "objective.max_new_tokens=4"]  # fmt: skip
SKIPPED = {"fetch-data", "quickstart"}


PAGES = ("README.md", "docs/guide.md", "docs/benchmarks.md")


def page_commands(page: str) -> list[list[str]]:
    """A page's pipelines commands in order; those under `accelerate launch` run in tests/training/."""
    commands = []
    for line in shell_lines((REPO / page).read_text()):
        words = shlex.split(line, comments=True)
        if words[:3] == ["python", "-m", "pipelines"] and words[3] not in SKIPPED:
            commands.append(words[3:])
    return commands


def write_own_data(root) -> None:
    """The files the README's "your own data" section names."""
    rng = random.Random(0)
    (root / "my_corpus").mkdir()
    topics = ["lists", "strings", "files", "sockets", "dates", "paths", "threads", "numbers"]
    paragraphs = [f"Paragraph {i}: how {rng.choice(topics)} and {rng.choice(topics)} work together, with an "
                  f"example of {rng.choice(topics)} in use." for i in range(1500)]  # fmt: skip
    (root / "my_corpus" / "notes.txt").write_text("\n\n".join(paragraphs))
    words = {"bad": "dull", "ok": "fine", "good": "great"}
    for name, n in (("reviews.csv", 90), ("reviews-dev.csv", 30)):
        with (root / name).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["review", "stars"])
            for _ in range(n):
                label = rng.choice(list(words))
                writer.writerow([f"a {words[label]} film", label])
    with (root / "qa.jsonl").open("w") as f:
        for i in range(200):
            record = {"question": f"who is {i}?", "context": f"{i} is a number.", "answer": "a number"}
            f.write(json.dumps(record) + "\n")


def runnable(argv: list[str]) -> bool:
    """False for a command that needs the public data sets when they are not here, or a run that was skipped."""
    if argv[0] in ("generate", "evaluate", "compare"):
        runs_there = all(Path(a).exists() for a in argv[1:] if a.startswith("runs/"))
        return runs_there and (DATA.is_dir() or not any(a.startswith("data/") for a in argv))
    config = argv[argv.index("--config") + 1] if "--config" in argv else None
    cfg = load_config(config, [argv[i + 1] for i, a in enumerate(argv) if a == "--set"])
    return DATA.is_dir() or not str(cfg.data.path or "").startswith("data/")


def tiny(argv: list[str]) -> list[str]:
    if argv[0] in ("pretrain", "finetune"):
        return [*argv, *(item for s in TINY_RUN for item in ("--set", s))]
    if argv[0] == "generate":
        return [*argv, "--max-new-tokens", "4"]
    return argv


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A directory laid out like the repository: its configs, its committed tokenizers, data/ when present."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "tokenizers").mkdir()
    for tokenizer in ("gpt-builtin", "bert-builtin", "t5-builtin"):
        (tmp_path / "tokenizers" / tokenizer).symlink_to(REPO / "tokenizers" / tokenizer)
    if DATA.is_dir():
        (tmp_path / "data").symlink_to(DATA.resolve())
    write_own_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_page(page: str, done: list[list[str]]) -> list[str]:
    """Runs a page's runnable commands in order, except those in `done` (a reader who ran a training command on an
    earlier page does not run it again); returns the first three words of each that ran."""
    ran = []
    for argv in page_commands(page):
        if argv[0] == "finetune" and "model.lora.r=8" in argv:
            pytest.importorskip("peft")
        if not runnable(argv) or (argv in done and argv[0] in ("pretrain", "finetune", "train-tokenizer")):
            continue
        main(tiny(argv))
        done.append(argv)
        ran.append(" ".join(argv[:3]))
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return ran


def test_the_readme_then_the_docs_run_top_to_bottom(scratch, capsys):
    done = []
    ran = run_page("README.md", done)
    out = capsys.readouterr().out
    # The built-in path of every family runs without any download; the rest when data/ is here.
    for expected in ("pretrain --config configs/gpt/tiny.yaml", "pretrain --config configs/t5/tiny.yaml",
                     "finetune --config configs/t5/code-summary.yaml", "pretrain --config configs/bert/tiny.yaml",
                     "train-tokenizer --config configs/gpt/own-corpus.yaml",
                     "finetune --config configs/finetune/sst2-bert.yaml"):  # fmt: skip
        assert expected in ran, (expected, ran)
    assert (scratch / "runs" / "qa" / "final" / "config.json").is_file()
    assert (scratch / "runs" / "reviews" / "final" / "config.json").is_file()
    assert re.search(r"return the \[MASK\] of the list\.\n  \d\.\d{4}  ", out)  # fill-mask: scored fills
    assert "Return the number of" in out  # the GPT's continuation, prompt first

    # A reader of the guide has followed the README; each of its blocks then runs as written.
    ran = run_page("docs/guide.md", done)
    built_in = ["pretrain --config configs/t5/mixture.yaml", "pretrain --config configs/t5/small.yaml",
                "pretrain --config configs/gpt/small.yaml", "generate runs/t5-code-summary"]  # fmt: skip
    with_data = ["finetune --config configs/t5/alpaca.yaml", "finetune --config configs/gpt/alpaca.yaml",
                 "finetune --config configs/t5/multi30k.yaml", "evaluate runs/sst2-bert"]  # fmt: skip
    for expected in built_in + (with_data if DATA.is_dir() else []):
        assert any(r.startswith(expected) for r in ran), (expected, ran)
    if DATA.is_dir():
        assert len(run_page("docs/benchmarks.md", done)) >= 5  # its recipe commands, at tiny step counts
