"""The generate command: seeds, greedy decoding, streaming, several sequences, prompt sources."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.config import load_config
from pipelines.generation import GenerationSettings, generate, load_for_generation
from pipelines.pretrain import pretrain
from tests.conftest import TINY


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    out = tmp_path_factory.mktemp("gen") / "run"
    pretrain(load_config(None, [*TINY, f"tokenizer.path={tiny_tokenizer_dir}", f"output_dir={out}",
                                "train.max_steps=15"]))  # fmt: skip
    return out


def cli_stdout(capsys, *argv) -> str:
    main(list(argv))
    return capsys.readouterr().out


def test_same_seed_same_text_and_streaming_matches_decoding(run_dir, capsys):
    args = ("generate", str(run_dir), "Return the", "--seed", "7", "--max-new-tokens", "12")
    first, second = cli_stdout(capsys, *args), cli_stdout(capsys, *args)
    assert first == second and first.startswith("Return the")
    model, tokenizer = load_for_generation(run_dir)
    text = generate(model, tokenizer, "Return the", GenerationSettings(max_new_tokens=12, seed=7))[0]
    assert first.rstrip("\n") == text  # what was streamed token by token is the full decoded text


def test_greedy_ignores_the_seed(run_dir, capsys):
    base = ("generate", str(run_dir / "final"), "The", "--greedy", "--max-new-tokens", "8")
    assert cli_stdout(capsys, *base, "--seed", "1") == cli_stdout(capsys, *base, "--seed", "2")


def test_several_sequences_are_numbered(run_dir, capsys):
    sampling = ("--seed", "0", "--top-p", "0.9", "--repetition-penalty", "1.2")
    out = cli_stdout(
        capsys, "generate", str(run_dir), "The", "--num-return-sequences", "3", "--max-new-tokens", "5", *sampling
    )
    assert [line for line in out.splitlines() if line.startswith("--- [")] == ["--- [1/3]", "--- [2/3]", "--- [3/3]"]


def test_prompts_from_file_and_stdin_and_interactive(run_dir, tmp_path, capsys, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("alpha\n\nbeta\n")
    out = cli_stdout(capsys, "generate", str(run_dir), "--prompt-file", str(prompts), "--max-new-tokens", "3")
    assert out.startswith("alpha") and "beta" in out

    monkeypatch.setattr("sys.stdin", io.StringIO("gamma\ndelta\n"))
    out = cli_stdout(capsys, "generate", str(run_dir), "-", "--max-new-tokens", "3")
    assert "gamma" in out and "delta" in out

    monkeypatch.setattr("sys.stdin", io.StringIO("epsilon\n\n"))
    out = cli_stdout(capsys, "generate", str(run_dir), "--interactive", "--max-new-tokens", "3")
    assert "epsilon" in out


def test_generation_never_runs_past_the_position_table(run_dir):
    model, tokenizer = load_for_generation(run_dir)
    limit = model.config.n_positions
    text = generate(model, tokenizer, "a b", GenerationSettings(max_new_tokens=10 * limit, greedy=True))[0]
    assert len(tokenizer(text)["input_ids"]) <= limit + 2  # re-tokenising decoded text may merge differently
