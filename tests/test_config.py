"""Config loading: defaults, YAML files, `extends:`, `--set` overrides, validation messages, round-trips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from pipelines.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    load_config,
    parse_config,
    save_config,
)
from pipelines.errors import PipelineError

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


def _repo_configs() -> list[Path]:
    if not CONFIGS_DIR.is_dir():
        return []
    files = sorted({*CONFIGS_DIR.rglob("*.yaml"), *CONFIGS_DIR.rglob("*.yml")})
    # accelerate/ holds launcher configs and suites/ run matrices (tested below), not run configs.
    return [p for p in files if p.relative_to(CONFIGS_DIR).parts[0] not in ("accelerate", "suites")]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- loading


def test_defaults_load():
    cfg = load_config()
    assert cfg == RunConfig()
    assert cfg.data == DataConfig()
    assert cfg.model.arch == "gpt2"
    assert cfg.train.max_steps == 500


def test_yaml_file_loads(tmp_path):
    path = _write(
        tmp_path / "run.yaml",
        "output_dir: runs/x\nseed: 3\nmodel:\n  arch: llama\n  hidden_size: 64\ntrain:\n  max_steps: 11\n",
    )
    cfg = load_config(path)
    assert cfg.output_dir == "runs/x"
    assert cfg.seed == 3
    assert cfg.model.arch == "llama"
    assert cfg.model.hidden_size == 64
    assert cfg.train.max_steps == 11
    # untouched fields keep their defaults
    assert cfg.model.num_layers == ModelConfig().num_layers
    assert cfg.optim == RunConfig().optim


def test_empty_yaml_file_is_defaults(tmp_path):
    assert load_config(_write(tmp_path / "empty.yaml", "")) == RunConfig()


def test_extends_merges_parent(tmp_path):
    (tmp_path / "base").mkdir()
    _write(
        tmp_path / "base" / "parent.yaml",
        "output_dir: runs/parent\nmodel:\n  hidden_size: 64\n  num_layers: 3\ntrain:\n  max_steps: 9\n",
    )
    child = _write(
        tmp_path / "child.yaml",
        "extends: base/parent.yaml\noutput_dir: runs/child\nmodel:\n  num_layers: 5\n",
    )
    cfg = load_config(child)
    assert cfg.output_dir == "runs/child"  # child wins
    assert cfg.model.num_layers == 5  # child wins inside a section
    assert cfg.model.hidden_size == 64  # deep-merged from the parent
    assert cfg.train.max_steps == 9  # section only in the parent


def test_extends_chain(tmp_path):
    _write(tmp_path / "a.yaml", "seed: 1\ntrain:\n  max_steps: 1\n  logging_steps: 1\n")
    _write(tmp_path / "b.yaml", "extends: a.yaml\nseed: 2\ntrain:\n  max_steps: 2\n")
    c = _write(tmp_path / "c.yaml", "extends: b.yaml\nseed: 3\n")
    cfg = load_config(c)
    assert (cfg.seed, cfg.train.max_steps, cfg.train.logging_steps) == (3, 2, 1)


def test_extends_missing_parent(tmp_path):
    child = _write(tmp_path / "child.yaml", "extends: nope.yaml\n")
    with pytest.raises(ConfigError, match="not found.*nope.yaml"):
        load_config(child)


# --------------------------------------------------------------------------- overrides


def test_overrides_parse_types():
    cfg = load_config(overrides=["train.max_steps=7", "optim.learning_rate=1e-3", "model.vocab_size=null"])
    assert cfg.train.max_steps == 7 and type(cfg.train.max_steps) is int
    assert cfg.optim.learning_rate == 0.001 and type(cfg.optim.learning_rate) is float
    assert cfg.model.vocab_size is None


def test_overrides_other_types():
    cfg = load_config(
        overrides=[
            "model.tie_word_embeddings=false",
            "output_dir=runs/o",
            "train.eval_max_batches=null",
            "optim.warmup_steps=0",
            "optim.max_grad_norm=2",  # int → float
            "model.vocab_size=512",
        ]
    )
    assert cfg.model.tie_word_embeddings is False
    assert cfg.output_dir == "runs/o"
    assert cfg.train.eval_max_batches is None
    assert cfg.optim.warmup_steps == 0
    assert cfg.optim.max_grad_norm == 2.0 and type(cfg.optim.max_grad_norm) is float
    assert cfg.model.vocab_size == 512


def test_overrides_apply_on_top_of_file(tmp_path):
    path = _write(tmp_path / "run.yaml", "train:\n  max_steps: 11\n  logging_steps: 3\n")
    cfg = load_config(path, ["train.max_steps=22"])
    assert cfg.train.max_steps == 22
    assert cfg.train.logging_steps == 3


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(overrides=["train.max_steps"])


# --------------------------------------------------------------------------- errors


def test_unknown_key_names_full_path_and_suggests():
    with pytest.raises(
        ConfigError, match=r"--set train\.max_step=3: .*'train\.max_step'.*did you mean 'train\.max_steps'"
    ):
        load_config(overrides=["train.max_step=3"])


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path / "run.yaml", "modle:\n  arch: gpt2\n")
    with pytest.raises(ConfigError, match=r"unknown key 'modle'.*did you mean 'model'"):
        load_config(path)


def test_unknown_key_message_names_source_file(tmp_path):
    path = _write(tmp_path / "run.yaml", "data:\n  sorce: files\n")
    with pytest.raises(ConfigError, match=r"run\.yaml.*'data\.sorce'.*did you mean 'source'"):
        load_config(path)


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"'train\.max_steps' must be int.*'abc'"):
        load_config(overrides=["train.max_steps=abc"])


def test_bool_is_not_int():
    with pytest.raises(ConfigError, match=r"'train\.max_steps'"):
        load_config(overrides=["train.max_steps=true"])


def test_float_is_not_int():
    with pytest.raises(ConfigError, match=r"'model\.hidden_size'"):
        load_config(overrides=["model.hidden_size=1.5"])


def test_section_must_be_mapping():
    with pytest.raises(ConfigError, match=r"'model' must be a mapping"):
        parse_config({"model": 3})


def test_unknown_choice_lists_valid_choices():
    with pytest.raises(ConfigError, match=r"'model\.arch' is 'rnn'.*'gpt2'.*'llama'"):
        load_config(overrides=["model.arch=rnn"])


def test_a_bare_no_is_the_choice_no_not_false(tmp_path):
    # YAML 1.1 reads `no` as False; `accelerate config` and its users write `mixed_precision: no`.
    assert load_config(overrides=["train.mixed_precision=no"]).train.mixed_precision == "no"
    path = _write(tmp_path / "fp32.yaml", "train:\n  mixed_precision: no\n")
    assert load_config(path).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match=r"'train\.mixed_precision' is True"):
        load_config(overrides=["train.mixed_precision=yes"])


def test_yaml_syntax_error_has_location(tmp_path):
    path = _write(tmp_path / "bad.yaml", "train:\n  max_steps: [1, 2\n  seed: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+:\d+: YAML syntax error"):
        load_config(path)


def test_yaml_syntax_error_exact_location(tmp_path):
    # a tab in indentation is a scanner error at a known position (line 2, column 1)
    path = _write(tmp_path / "tab.yaml", "train:\n\tmax_steps: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:2:1:" in str(info.value)


def test_yaml_top_level_must_be_mapping(tmp_path):
    path = _write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_config_error_is_pipeline_error():
    assert issubclass(ConfigError, PipelineError)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (
            ["model.hidden_size=30", "model.num_heads=4"],
            r"'model\.num_heads' \(4\) must divide 'model\.hidden_size' \(30\)",
        ),
        (["data.validation_fraction=1.0"], r"'data\.validation_fraction' must be in \[0, 1\)"),
        (["data.validation_fraction=-0.1"], r"'data\.validation_fraction'"),
        (["data.block_size=0"], r"'data\.block_size' must be positive, got 0"),
        (["train.max_steps=-1"], r"'train\.max_steps' must be positive"),
        (["optim.learning_rate=0"], r"'optim\.learning_rate' must be positive"),
        (["model.dropout=1.0"], r"'model\.dropout'"),
        (["data.source=files"], r"'data\.path' is required when 'data\.source' is 'files'"),
        (["data.source=hub"], r"'data\.path' is required when 'data\.source' is 'hub'"),
        (["model.max_position_embeddings=64", "data.block_size=128"], r"'model\.max_position_embeddings' \(64\)"),
        (["objective.mlm_probability=0"], r"'objective\.mlm_probability' must be in \(0, 1\), got 0"),
        (["objective.mlm_probability=1"], r"'objective\.mlm_probability' must be in \(0, 1\)"),
        (
            ["optim.lr_scheduler_type=warmup_stable_decay", "optim.decay_fraction=1", "train.max_runtime=60"],
            r"'optim\.decay_fraction' must be below 1 with 'train\.max_runtime'",
        ),
    ],
)
def test_range_checks(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(overrides=overrides)


def test_range_check_boundaries_accepted():
    cfg = load_config(
        overrides=[
            "data.validation_fraction=0",
            "model.dropout=0.5",
            "data.source=files",
            "data.path=x.txt",
            "model.max_position_embeddings=128",
            "data.block_size=128",
        ]
    )
    assert cfg.data.validation_fraction == 0.0
    assert cfg.data.path == "x.txt"


@pytest.mark.parametrize(
    "override",
    [
        "optim.learning_rate=nan",  # 'must be positive' is `value <= 0`, which NaN passes
        "optim.learning_rate=.inf",
        "train.eval_max_batches=0",  # evaluate_lm then scores nothing and reports loss 0.0, perplexity 1.0
        "data.max_documents=0",  # load_raw_datasets then returns an empty train split without an error
        "optim.warmup_steps=-5",
        "optim.adam_beta1=1.5",  # only torch.optim.AdamW rejects it, with a ValueError, at train time
        "model.intermediate_size=0",
    ],
)
def test_range_checks_on_optional_and_bounded_fields(override):
    with pytest.raises(ConfigError):
        load_config(overrides=[override])


def test_classification_fields_parse():
    # YAML reads `0: negative` with int keys; raw label values are compared as strings
    cfg = parse_config(
        {
            "data": {"label_map": {0: "negative", 1: "positive"}, "labels": ["negative", "positive"]},
            "objective": {"name": "cls", "metrics": ["accuracy", "f1_macro"]},
            "tokenizer": {"kind": "wordpiece", "lowercase": True},
            "model": {"arch": "bert"},
        }
    )
    assert cfg.data.label_map == {"0": "negative", "1": "positive"}
    assert cfg.data.labels == ["negative", "positive"]
    assert cfg.objective.metrics == ["accuracy", "f1_macro"]
    assert (cfg.tokenizer.kind, cfg.tokenizer.lowercase, cfg.model.arch) == ("wordpiece", True, "bert")


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("data.label_map=[a, b]", r"'data\.label_map' must be a mapping"),
        ("data.label_map={0: 1}", r"'data\.label_map\.0' must be str, got 1"),
        ("data.labels=negative", r"'data\.labels' must be a list"),
        ("data.format=xml", r"'data\.format' is 'xml'; valid choices: .*'txt'"),
        ("objective.name=seq3seq", r"'objective\.name' is 'seq3seq'; valid choices: 'clm', 'mlm', 'cls'"),
    ],
)
def test_classification_fields_reject_bad_values(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(overrides=[override])


# --------------------------------------------------------------------------- saving, immutability


def test_save_load_round_trip(tmp_path):
    cfg = load_config(
        overrides=[
            "output_dir=runs/rt",
            "seed=5",
            "model.arch=llama",
            "model.vocab_size=320",
            "optim.learning_rate=1e-3",
            "train.mixed_precision=bf16",
            "data.source=files",
            "data.path=a/*.txt",
        ]
    )
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text()) == cfg.to_dict()


def test_default_round_trip(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(RunConfig(), path)
    assert load_config(path) == RunConfig()


def test_configs_are_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.max_steps = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("path", _repo_configs(), ids=lambda p: str(p.relative_to(CONFIGS_DIR)))
def test_repo_config_loads(path):
    cfg = load_config(path)
    assert cfg.output_dir == _stated_output_dir(path)


def _stated_output_dir(path: Path) -> str:
    """The `output_dir` a YAML file states, or the one it inherits through `extends:`, or the default."""
    raw = yaml.safe_load(path.read_text()) or {}
    if "output_dir" in raw:
        return raw["output_dir"]
    if "extends" in raw:
        return _stated_output_dir(path.parent / raw["extends"])
    return RunConfig().output_dir


def test_stated_output_dir_helper(tmp_path):
    # the helper that checks shipped configs must itself follow `extends:`
    _write(tmp_path / "p.yaml", "output_dir: runs/p\n")
    child = _write(tmp_path / "c.yaml", "extends: p.yaml\nseed: 1\n")
    assert _stated_output_dir(child) == "runs/p" == load_config(child).output_dir


@pytest.mark.parametrize("suite", sorted((CONFIGS_DIR / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_suite_runs_are_valid_configs(suite):
    """Every run of a benchmark suite loads with its overrides, so a suite cannot fail an hour in on a typo."""
    spec = yaml.safe_load(suite.read_text())
    for run in spec["runs"]:
        overrides = [o.replace("{root}", spec["root"]) for o in run.get("set", [])]
        cfg = load_config(CONFIGS_DIR.parent / run["config"], overrides)
        assert cfg.output_dir and run["command"] in ("train-tokenizer", "pretrain", "finetune")
