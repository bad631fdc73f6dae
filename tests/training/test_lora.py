"""LoRA through peft: only the adapters (and a fresh head) train, and the export is a merged plain model that
loads, scores and generates with `transformers` alone, the adapters saved beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

from pipelines.cli import main
from pipelines.config import ConfigError, LoraConfig, ModelConfig, load_config
from pipelines.errors import PipelineError
from pipelines.finetune import finetune
from pipelines.models import ModelShape, build_model
from pipelines.models.lora import add_lora, is_lora
from pipelines.pretrain import pretrain
from tests.conftest import TINY
from tests.training.test_finetune_e2e import finetune_overrides, write_sentiment
from tests.training.test_text_to_text_e2e import TINY_T5, reversal_overrides

pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")


def weights(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def gpt_export(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    out = tmp_path_factory.mktemp("gpt") / "run"
    overrides = [*TINY, f"tokenizer.path={tiny_tokenizer_dir}", "train.max_steps=20", f"output_dir={out}"]
    pretrain(load_config(None, overrides))
    return out


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sentiment")
    return {"train": write_sentiment(root / "train.tsv", 480, 0), "dev": write_sentiment(root / "dev.tsv", 96, 1)}


def test_lora_classifier_trains_adapters_and_head_and_exports_merged_weights(gpt_export, sentiment, tmp_path):
    run = tmp_path / "run"
    cfg = load_config(None, finetune_overrides(sentiment, run, f"model.init_from={gpt_export}", "model.lora.r=4",
                                               "optim.learning_rate=1e-2", "train.eval_max_batches=null"))  # fmt: skip
    results = finetune(cfg)
    assert results["trainable_parameters"] < 0.1 * results["parameters"]

    merged, base = weights(run), weights(gpt_export)
    assert not [k for k in merged if "lora" in k]
    assert merged["transformer.wte.weight"].equal(base["transformer.wte.weight"])  # frozen
    assert merged["transformer.h.0.mlp.c_fc.weight"].equal(base["transformer.h.0.mlp.c_fc.weight"])  # not a target
    assert not merged["transformer.h.0.attn.c_attn.weight"].equal(base["transformer.h.0.attn.c_attn.weight"])
    adapter = json.loads((run / "final" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["target_modules"] == ["c_attn"]
    assert "LoRA" in (run / "final" / "README.md").read_text()

    # The merged export, loaded by transformers alone, scores exactly what the adapted model scored in training:
    # a merge that dropped or mis-scaled an adapter (or left the head behind) would change the loss.
    assert AutoModelForSequenceClassification.from_pretrained(str(run / "final")).config.id2label[1] == "positive"
    main(["evaluate", str(run), "--output", str(tmp_path / "scored.json")])
    scored = json.loads((tmp_path / "scored.json").read_text())
    assert scored["loss"] == pytest.approx(results["eval_loss"], rel=1e-4)
    assert scored["accuracy"] == pytest.approx(results["eval_accuracy"])


def test_lora_t5_adapts_query_and_value_only_and_generates_from_the_merged_export(tmp_path):
    pretrained = tmp_path / "t5"
    pretrain(load_config(None, [*TINY_T5, "objective.name=span", "data.block_size=64", "data.max_documents=80",
                                "train.max_steps=5", "train.eval_steps=5", "train.eval_max_batches=1",
                                f"output_dir={pretrained}"]))  # fmt: skip
    overrides = reversal_overrides(tmp_path)
    cfg = load_config(None, [*TINY_T5, *overrides, "objective.name=seq2seq", f"model.init_from={pretrained}",
                             "model.lora.r=8", "train.max_steps=30", "train.eval_steps=30",
                             "train.eval_max_batches=1"])  # fmt: skip
    results = finetune(cfg)
    assert results["trainable_parameters"] < 0.2 * results["parameters"]

    run, merged, base = Path(cfg.output_dir), weights(Path(cfg.output_dir)), weights(pretrained)
    for name in ("shared.weight", "encoder.block.0.layer.0.SelfAttention.k.weight"):
        assert merged[name].equal(base[name]), name
    for name in ("encoder.block.0.layer.0.SelfAttention.q.weight", "decoder.block.0.layer.1.EncDecAttention.v.weight"):
        assert not merged[name].equal(base[name]), name
    model = AutoModelForSeq2SeqLM.from_pretrained(str(run / "final"))
    tokenizer = AutoTokenizer.from_pretrained(str(run / "final"))
    output = model.generate(**tokenizer("reverse: red blue", return_tensors="pt"), max_new_tokens=4, min_new_tokens=2)
    assert model.config.model_type == "t5" and output.shape[1] >= 3  # the start token and what it generated


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["objective.name=cls", "model.lora.r=4"], r"'model.lora' adapts a pretrained model: set 'model.init_from'"),
        (["objective.name=mlm", "model.init_from=runs/x", "model.lora.r=4"], r"fine-tunes .*not 'mlm'"),
        (["objective.name=cls", "model.init_from=runs/x", "model.lora.r=0"], r"needs r >= 1"),
    ],
)
def test_lora_settings_are_checked_when_the_config_loads(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_a_missing_peft_is_refused_before_any_work(gpt_export, sentiment, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    cfg = load_config(None, finetune_overrides(sentiment, tmp_path / "run", f"model.init_from={gpt_export}",
                                               "model.lora.r=4"))  # fmt: skip
    with pytest.raises(PipelineError, match="pip install peft"):
        finetune(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.parametrize(
    ("arch", "auto_class", "target"),
    [
        ("gpt2", AutoModelForCausalLM, "attn.c_attn"),
        ("llama", AutoModelForCausalLM, "self_attn.q_proj"),
        ("qwen3", AutoModelForCausalLM, "self_attn.q_proj"),
        ("bert", AutoModelForSequenceClassification, "attention.self.value"),
        ("modernbert", AutoModelForSequenceClassification, "attn.Wqkv"),
        ("t5", AutoModelForSeq2SeqLM, "EncDecAttention.q"),
    ],
)
def test_every_transformer_family_gets_adapters_on_its_attention_and_merges_to_a_plain_model(arch, auto_class, target):
    shape = ModelShape(vocab_size=64, max_positions=16, bos_token_id=1, eos_token_id=1, pad_token_id=0)
    config = ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2)
    model = add_lora(build_model(config, shape, auto_class, num_labels=2), LoraConfig(r=2), auto_class)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any(target in name and "lora_A" in name for name in trainable)
    assert all("lora_" in name or "modules_to_save" in name for name in trainable), trainable
    merged = model.merge_and_unload()
    assert type(merged).__module__.startswith("transformers.") and not is_lora(merged)
    assert not [name for name, _ in merged.named_parameters() if "lora" in name]
