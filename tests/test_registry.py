"""Name → builder registries and the objective/model compatibility check."""

from __future__ import annotations

import pytest

from pipelines.config import load_config
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


def test_config_choices_match_the_registries():
    """The choices a config accepts are exactly what the registries can build, so neither drifts."""
    import typing

    from pipelines.config import DataConfig, ModelConfig, ObjectiveConfig, TokenizerConfig
    from pipelines.data.sources import SOURCES
    from pipelines.models import MODELS
    from pipelines.objectives import OBJECTIVES
    from pipelines.tokenization import TOKENIZER_KINDS

    pairs = [(DataConfig, "source", SOURCES), (TokenizerConfig, "kind", TOKENIZER_KINDS),
             (ModelConfig, "arch", MODELS), (ObjectiveConfig, "name", OBJECTIVES)]  # fmt: skip
    for cls, field, registry in pairs:
        choices = typing.get_args(typing.get_type_hints(cls)[field])
        assert sorted(choices) == registry.names(), (cls.__name__, field)
