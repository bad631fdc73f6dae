"""Name → builder registries and the objective/model compatibility check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config
from pipelines.errors import PipelineError
from pipelines.models import MODELS
from pipelines.objectives import OBJECTIVES, Objective, check_compatible
from pipelines.registry import Registry


def test_register_and_get():
    reg = Registry("widget")
    entry = object()
    assert reg.register("a", entry) is entry
    assert reg.get("a") is entry
    assert "a" in reg and "b" not in reg


def test_register_as_decorator():
    reg = Registry("widget")

    @reg.register("made")
    def make():
        return 1

    assert reg.get("made") is make
    assert make() == 1


def test_names_sorted():
    reg = Registry("widget")
    for name in ("zeta", "alpha", "mid"):
        reg.register(name, name.upper())
    assert reg.names() == ["alpha", "mid", "zeta"]


def test_unknown_name_lists_known_names():
    reg = Registry("widget")
    reg.register("beta", 2)
    reg.register("alpha", 1)
    with pytest.raises(PipelineError, match=r"unknown widget 'gamma'; known: alpha, beta"):
        reg.get("gamma")


def test_double_registration_raises():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a", 2)
    assert reg.get("a") == 1  # the first entry survives


def test_double_registration_via_decorator_raises():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(lambda: None)


def test_builtin_registries_contents():
    assert {"gpt2", "llama", "bert"} <= set(MODELS.names())
    assert {"clm", "mlm", "cls"} <= set(OBJECTIVES.names())
    with pytest.raises(PipelineError, match=r"unknown model architecture 'rnn'; known: .*gpt2.*llama"):
        MODELS.get("rnn")


def test_check_compatible_default_config():
    check_compatible(load_config())  # must not raise
    check_compatible(load_config(overrides=["model.arch=llama"]))
    check_compatible(load_config(overrides=["model.arch=bert", "objective.name=mlm"]))
    check_compatible(load_config(overrides=["model.arch=bert", "objective.name=cls"]))
    check_compatible(load_config(overrides=["model.arch=gpt2", "objective.name=cls"]))


@pytest.mark.parametrize(("arch", "objective", "family"), [("bert", "clm", "masked"), ("gpt2", "mlm", "causal")])
def test_check_compatible_rejects_real_mismatches(arch, objective, family):
    cfg = load_config(overrides=[f"model.arch={arch}", f"objective.name={objective}"])
    with pytest.raises(PipelineError, match=rf"objective '{objective}' cannot train model\.arch '{arch}' \({family}"):
        check_compatible(cfg)


def test_check_compatible_allows_any_pairing_when_fine_tuning():
    # the family comes from the export being loaded, not from model.arch
    check_compatible(load_config(overrides=["model.arch=bert", "objective.name=clm", "model.init_from=runs/x"]))


def test_check_compatible_rejects_wrong_family(monkeypatch):
    clm = OBJECTIVES.get("clm")
    fake = Objective(
        kind=clm.kind,
        families=("seq2seq",),
        auto_class=clm.auto_class,
        build_collator=clm.build_collator,
        shift_labels=True,
    )
    monkeypatch.setitem(OBJECTIVES._entries, "clm", fake)
    with pytest.raises(PipelineError, match=r"objective 'clm' cannot train model\.arch 'gpt2' \(causal family\)"):
        check_compatible(load_config())


@pytest.mark.parametrize("key", ["data.source", "tokenizer.kind", "model.arch", "objective.name"])
def test_config_choices_are_the_registries_names(key):
    """A config accepts exactly the names the registries can build (registration order), so neither drifts."""
    from pipelines.data.sources import SOURCES
    from pipelines.tokenization import TOKENIZER_KINDS

    registry = {"data.source": SOURCES, "tokenizer.kind": TOKENIZER_KINDS, "model.arch": MODELS,
                "objective.name": OBJECTIVES}[key]  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"{key}=nonesuch"])
    assert str(err.value).endswith(f"valid choices: {', '.join(repr(name) for name in registry)}")
    assert sorted(registry) == registry.names() and len(registry.names()) >= 3


def test_a_new_architecture_and_objective_train_with_nothing_but_their_registry_entries(tiny_overrides, monkeypatch):
    """What CONTRIBUTING.md promises: an architecture is one `MODELS` entry and an objective one `OBJECTIVES` entry;
    configs accept their names, and the run trains, evaluates and exports with no change anywhere else."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from pipelines.models import ModelSpec
    from pipelines.pretrain import pretrain

    def qwen2_config(cfg, shape):
        return Qwen2Config(
            vocab_size=shape.vocab_size,
            hidden_size=cfg.hidden_size,
            intermediate_size=64,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=1,
            max_position_embeddings=shape.max_positions,
            eos_token_id=shape.eos_token_id,
            pad_token_id=shape.pad_token_id,
        )

    monkeypatch.setitem(MODELS._entries, "qwen2", ModelSpec(family="causal", build_config=qwen2_config))
    monkeypatch.setitem(OBJECTIVES._entries, "next_token", OBJECTIVES.get("clm"))
    cfg = load_config(None, [*tiny_overrides, "model.arch=qwen2", "objective.name=next_token", "train.max_steps=20"])
    results = pretrain(cfg)

    records = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] - 0.75
    assert results["eval_bits_per_byte"] > 0
    model = AutoModelForCausalLM.from_pretrained(Path(cfg.output_dir) / "final")
    assert model.config.model_type == "qwen2" and model.config.num_key_value_heads == 1
