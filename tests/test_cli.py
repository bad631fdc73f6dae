"""Bad input gets one clear line on stderr, a non-zero exit, no traceback and no files left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.cli import main
from tests.conftest import REPO


def run_cli(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    err = capsys.readouterr().err
    return exit_info.value.code, err


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_steps: 10\n  logging_steps: [1, 2\n")
    code, err = run_cli(capsys, "pretrain", "--config", str(bad))
    assert_clean_error(code, err, f"{bad}:", "YAML syntax error")


def test_unknown_key_suggests_the_valid_one(tmp_path, capsys):
    code, err = run_cli(capsys, "pretrain", "--set", "train.max_step=5")
    assert_clean_error(code, err, "unknown key 'train.max_step'", "did you mean 'train.max_steps'")


@pytest.mark.parametrize(("override", "fragments"), [
    ("train.max_stpes=40", ["--set train.max_stpes=40: unknown key", "did you mean 'train.max_steps'"]),
    ("trian.max_steps=40", ["--set trian.max_steps=40: unknown key", "did you mean 'train'"]),
    ("train.max_steps=forty", ["--set train.max_steps=forty: 'train.max_steps' must be int"]),
    ("optim.name=sgd", ["--set optim.name=sgd: 'optim.name' is 'sgd'; valid choices"]),
])  # fmt: skip
def test_a_bad_set_is_blamed_on_the_set_not_the_config_file(override, fragments, capsys):
    config = "configs/gpt/tiny.yaml"
    code, err = run_cli(capsys, "pretrain", "--config", str(REPO / config), "--set", override)
    assert_clean_error(code, err, *fragments)
    assert config not in err


def test_sets_inside_a_mapping_field_are_left_to_the_file(tmp_path):
    from pipelines.config import load_config

    cfg = load_config(None, ["data.label_map.0=negative", "model.init_from=", "optim.learning_rate=1e-3"])
    assert cfg.data.label_map == {"0": "negative"} and cfg.model.init_from is None and cfg.optim.learning_rate == 1e-3


def test_evaluate_names_a_run_that_does_not_exist(tmp_path, capsys):
    code, err = run_cli(capsys, "evaluate", str(tmp_path / "no-such-run"))
    assert_clean_error(code, err, "no such run or export:", "no-such-run")


def test_a_tracker_that_is_not_installed_is_refused_before_any_work(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    code, err = run_cli(capsys, "pretrain", "--set", "train.report_to=wandb", "--set", f"output_dir={tmp_path / 'r'}")
    assert_clean_error(code, err, "train.report_to is 'wandb'", "pip install wandb")
    assert not (tmp_path / "r").exists()


def test_field_arguments_must_name_a_field(tmp_path, capsys):
    code, err = run_cli(capsys, "generate", str(tmp_path), "--field", "no equals sign")
    assert_clean_error(code, err, "--field expects NAME=VALUE")


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["data.source=files", "data.path=/no/such/file.txt"], ["data file not found: /no/such/file.txt"]),
        (["model.vocab_size=64"], ["model.vocab_size is 64", "512 tokens"]),
        (["model.arch=transformerxl"], ["'model.arch'", "'gpt2'", "'llama'"]),
    ],
)
def test_bad_input_fails_before_any_file_is_written(tiny_overrides, tmp_path, capsys, overrides, fragments):
    code, err = run_cli(capsys, "pretrain", *sum((["--set", o] for o in tiny_overrides + overrides), []))
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "run").exists()


def test_missing_text_column_lists_the_columns(tiny_overrides, tmp_path, capsys):
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"body": f"document {i}", "id": i}) + "\n" for i in range(20)))
    sets = [*tiny_overrides, "data.source=files", f"data.path={data}"]
    code, err = run_cli(capsys, "pretrain", *sum((["--set", o] for o in sets), []))
    assert_clean_error(code, err, "no column 'text'", "body", "id")
    assert not (tmp_path / "run").exists()


def test_missing_tokenizer_points_to_train_tokenizer(tmp_path, capsys):
    code, err = run_cli(capsys, "pretrain", "--set", f"tokenizer.path={tmp_path / 'nope'}",
                        "--set", f"output_dir={tmp_path / 'run'}")  # fmt: skip
    assert_clean_error(code, err, "no tokenizer at", "train-tokenizer")
    assert not (tmp_path / "run").exists()


def test_output_dir_with_other_files_is_refused(tiny_overrides, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    code, err = run_cli(capsys, "pretrain", *sum((["--set", o] for o in tiny_overrides), []))
    assert_clean_error(code, err, "holds no run")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_generate_on_a_missing_directory(tmp_path, capsys):
    code, err = run_cli(capsys, "generate", str(tmp_path / "missing"), "hello")
    assert_clean_error(code, err, "no such directory")


def test_train_tokenizer_refuses_to_replace_one(tiny_tokenizer_dir, capsys):
    code, err = run_cli(capsys, "train-tokenizer", "--set", f"tokenizer.path={tiny_tokenizer_dir}")
    assert_clean_error(code, err, "already exists", "--overwrite")


def test_help_does_not_import_torch():
    """`python -m pipelines --help` answers without torch or transformers' model code (seconds per start)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipelines", "--help"], capture_output=True,
                            text=True)  # fmt: skip
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert result.returncode == 0 and "pipelines.cli" in imported
    assert not {"torch", "pipelines.models"} & imported


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "pipelines", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("train-tokenizer", "pretrain", "generate", "quickstart"):
        assert command in result.stdout
