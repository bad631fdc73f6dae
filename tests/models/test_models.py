"""Model shapes derived from the tokenizer, and the tiny GPT-2 / Llama builders."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)

from pipelines.config import ConfigError, ModelConfig, load_config
from pipelines.errors import PipelineError
from pipelines.models import MODELS, ModelShape, build_model, cpu_dropout_mask, init_model, model_shape


class FakeTokenizer:
    def __init__(self, size: int, bos: int | None = 0, eos: int | None = 0, pad: int | None = 1):
        self.size = size
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos, eos, pad

    def __len__(self) -> int:
        return self.size


def _tiny(arch: str, **kw) -> ModelConfig:
    return ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, **kw)


# --------------------------------------------------------------------------- model_shape


@pytest.mark.parametrize(("size", "expected"), [(1, 64), (63, 64), (64, 64), (65, 128), (300, 320), (4096, 4096)])
def test_vocab_rounded_up_to_64(size, expected):
    shape = model_shape(ModelConfig(), FakeTokenizer(size), block_size=16)
    assert shape.vocab_size == expected


def test_shape_carries_special_ids_and_positions():
    shape = model_shape(ModelConfig(), FakeTokenizer(300, bos=2, eos=3, pad=4), block_size=16)
    assert shape == ModelShape(vocab_size=320, max_positions=16, bos_token_id=2, eos_token_id=3, pad_token_id=4)
    longer = model_shape(ModelConfig(max_position_embeddings=64), FakeTokenizer(300), block_size=16)
    assert longer.max_positions == 64


def test_explicit_vocab_size_is_kept():
    assert model_shape(ModelConfig(vocab_size=300), FakeTokenizer(300), 16).vocab_size == 300
    assert model_shape(ModelConfig(vocab_size=1000), FakeTokenizer(300), 16).vocab_size == 1000


def test_explicit_vocab_size_too_small():
    with pytest.raises(PipelineError, match=r"model\.vocab_size is 256 but the tokenizer has 300 tokens"):
        model_shape(ModelConfig(vocab_size=256), FakeTokenizer(300), block_size=16)


def test_num_heads_must_divide_hidden_size():
    with pytest.raises(ConfigError, match=r"'model\.num_heads' \(3\) must divide 'model\.hidden_size' \(32\)"):
        load_config(overrides=["model.hidden_size=32", "model.num_heads=3"])


def test_unknown_arch_in_build():
    shape = model_shape(ModelConfig(), FakeTokenizer(64), 8)
    with pytest.raises(PipelineError, match=r"unknown model architecture 'rnn'"):
        build_model(ModelConfig(arch="rnn"), shape, AutoModelForCausalLM)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- builders


@pytest.fixture(scope="module", params=["gpt2", "llama", "qwen3"])
def tiny_model(request):
    torch.manual_seed(0)
    cfg = _tiny(request.param)
    shape = model_shape(cfg, FakeTokenizer(100, bos=0, eos=0, pad=1), block_size=16)
    return request.param, build_model(cfg, shape, AutoModelForCausalLM), shape


def test_tiny_model_forward(tiny_model):
    arch, model, shape = tiny_model
    assert shape.vocab_size == 128
    torch.manual_seed(1)
    input_ids = torch.randint(0, 100, (3, 10))
    out = model(input_ids=input_ids, labels=input_ids)
    assert out.logits.shape == (3, 10, 128)
    assert out.loss.dim() == 0
    assert torch.isfinite(out.loss)
    # an untrained model is close to uniform over the vocabulary
    assert abs(out.loss.item() - math.log(128)) < 1.0


def test_tiny_model_loss_shifts_labels_and_ignores_padding(tiny_model):
    _, model, _ = tiny_model
    model.eval()
    torch.manual_seed(2)
    input_ids = torch.randint(0, 100, (2, 8))
    labels = input_ids.clone()
    labels[1, 5:] = -100
    with torch.no_grad():
        out = model(input_ids=input_ids, labels=labels)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.shape[-1]), labels[:, 1:].reshape(-1))
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_tiny_model_config(tiny_model):
    arch, model, shape = tiny_model
    config = model.config
    assert config.vocab_size == 128
    assert config.bos_token_id == 0 and config.eos_token_id == 0 and config.pad_token_id == 1
    assert model.get_input_embeddings().weight.shape == (128, 32)
    # tied by default: one matrix for input embeddings and the output projection
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    if arch == "gpt2":
        assert (config.n_embd, config.n_layer, config.n_head, config.n_positions) == (32, 2, 2, 16)
    else:
        assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 2)
        assert config.num_key_value_heads == 2
        assert config.max_position_embeddings == 16
        assert config.intermediate_size == 128  # 8/3 · 32 = 85, rounded up to a multiple of 64


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_untied_embeddings(arch):
    cfg = _tiny(arch, tie_word_embeddings=False)
    model = build_model(cfg, model_shape(cfg, FakeTokenizer(64), 8), AutoModelForCausalLM)
    assert model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()


def test_dropout_reaches_the_model_config():
    shape = model_shape(ModelConfig(), FakeTokenizer(64), 8)
    gpt2 = build_model(_tiny("gpt2", dropout=0.3), shape, AutoModelForCausalLM).config
    assert (gpt2.resid_pdrop, gpt2.embd_pdrop, gpt2.attn_pdrop) == (0.3, 0.3, 0.3)
    llama = build_model(_tiny("llama", dropout=0.3), shape, AutoModelForCausalLM).config
    assert llama.attention_dropout == 0.3


def test_residual_dropout_drops_each_blocks_outputs_in_training_only(tmp_path):
    shape = model_shape(ModelConfig(), FakeTokenizer(64), 8)
    torch.manual_seed(0)
    plain = build_model(_tiny("qwen3"), shape, AutoModelForCausalLM).eval()
    torch.manual_seed(0)
    dropped = build_model(_tiny("qwen3", residual_dropout=0.5), shape, AutoModelForCausalLM)
    hooked = sorted(name for name, m in dropped.named_modules() if m._forward_hooks and "rotary" not in name)
    assert hooked == [f"model.layers.{i}.{p}" for i in range(2) for p in ("mlp.down_proj", "self_attn.o_proj")]
    seen = []  # registered after the dropout hook, so it sees the dropped output
    projection = dropped.model.layers[0].self_attn.o_proj
    projection.register_forward_hook(lambda m, args, out: seen.append((F.linear(args[0], m.weight), out)))
    ids = torch.randint(0, 64, (4, 8))
    with torch.no_grad():
        dropped.train()(input_ids=ids)
        raw, out = seen[-1]
        kept = out != 0
        assert 0.35 < kept.float().mean() < 0.65
        torch.testing.assert_close(out[kept], 2 * raw[kept])  # inverted dropout: survivors scaled by 1 / (1 - p)
        torch.testing.assert_close(dropped.eval()(input_ids=ids).logits, plain(input_ids=ids).logits)
    dropped.save_pretrained(tmp_path)
    assert "residual" not in (tmp_path / "config.json").read_text()  # the export is a plain Qwen3


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_rotary_tables_give_transformers_own_angles_and_are_not_saved(arch):
    shape = model_shape(ModelConfig(), FakeTokenizer(64), 8)
    model = build_model(_tiny(arch), shape, AutoModelForCausalLM)
    rotary = model.model.rotary_emb
    assert rotary.cos_table.shape == (8, rotary.inv_freq.numel() * 2)
    plain = type(model)(model.config)  # the same weights, no tables: transformers computes the angles
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(0, 64, (4, 8))
    for autocast in (False, True):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            assert torch.equal(model.train()(input_ids=ids).logits, plain.train()(input_ids=ids).logits)
    positions = torch.arange(8)[None]
    tabled = rotary(torch.zeros(1, 8, 32), positions)
    assert torch.equal(tabled[0], rotary.cos_table[positions]) and torch.equal(tabled[1], rotary.sin_table[positions])
    longer = torch.arange(12)[None]  # past the table: transformers' own computation
    torch.testing.assert_close(rotary(torch.zeros(1, 12, 32), longer)[0][:, :8], tabled[0])
    assert not any("table" in key for key in model.state_dict())


@pytest.mark.parametrize("p", [0.05, 0.15, 0.5])
def test_cpu_dropout_mask_keeps_one_minus_p_and_follows_the_seed(p):
    like = torch.zeros(1000, 1001, dtype=torch.bfloat16)  # an odd count: the last 64-bit draw is cut
    torch.manual_seed(3)
    mask = cpu_dropout_mask(like, p)
    assert mask.dtype == torch.bfloat16 and mask.shape == like.shape
    kept = mask != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.002  # 1,001,000 draws: the s.d. is below 0.0005
    assert set(mask[kept].unique().tolist()) == {torch.tensor(1 / (1 - p), dtype=torch.bfloat16).item()}
    lanes = kept.flatten()[:1_000_000].view(-1, 4).float().mean(0)  # each of a draw's four 16-bit lanes
    torch.testing.assert_close(lanes, torch.full((4,), 1 - p), atol=0.004, rtol=0)
    torch.manual_seed(3)
    assert torch.equal(cpu_dropout_mask(like, p), mask)


def test_residual_dropout_is_for_llama_style_blocks(tmp_path):
    with pytest.raises(ConfigError, match="'model.residual_dropout' is for llama and qwen3; 'gpt2'"):
        load_config(overrides=["model.arch=gpt2", "model.residual_dropout=0.1"])
    with pytest.raises(ConfigError, match=r"'model.residual_dropout' must be in \[0, 1\)"):
        load_config(overrides=["model.arch=qwen3", "model.residual_dropout=1.0"])
    shape = model_shape(ModelConfig(), FakeTokenizer(64), 8)
    build_model(_tiny("gpt2"), shape, AutoModelForCausalLM).save_pretrained(tmp_path)
    with pytest.raises(PipelineError, match="needs Llama-style blocks .* a 'gpt2' model has none"):
        init_model(_tiny("qwen3", residual_dropout=0.1), tmp_path, AutoModelForCausalLM, FakeTokenizer(64), 8)


def test_qwen3_normalises_each_heads_queries_and_keys_and_exports_plain(tmp_path):
    cfg = _tiny("qwen3")
    model = build_model(cfg, model_shape(cfg, FakeTokenizer(64), 8), AutoModelForCausalLM)
    attention = model.model.layers[0].self_attn
    assert model.config.head_dim == 16  # width / heads, not Qwen3's default of 128
    assert attention.q_norm.weight.shape == attention.k_norm.weight.shape == (16,)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits)


def test_explicit_intermediate_size():
    for arch in ("gpt2", "llama"):
        cfg = _tiny(arch, intermediate_size=48)
        model = build_model(cfg, model_shape(cfg, FakeTokenizer(64), 8), AutoModelForCausalLM)
        sizes = {p.shape for n, p in model.named_parameters() if "mlp" in n}
        assert any(48 in s for s in sizes), (arch, sizes)


def test_registry_families():
    assert MODELS.get("gpt2").family == "causal"
    assert MODELS.get("llama").family == "causal"
    assert MODELS.get("bert").family == "masked"
    assert MODELS.get("modernbert").family == "masked"


def test_modernbert_is_a_biasless_prenorm_encoder_with_a_tied_head():
    cfg = _tiny("modernbert", dropout=0.1)
    model = build_model(cfg, model_shape(cfg, FakeTokenizer(100, bos=2, eos=3, pad=0), block_size=16),
                        AutoModelForMaskedLM)  # fmt: skip
    config = model.config
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("modernbert", 32, 2)
    assert config.intermediate_size == 128 and config.layer_types == ["full_attention"] * 2  # 8/3·32 → 64-multiple
    assert (config.pad_token_id, config.cls_token_id, config.sep_token_id) == (0, 2, 3)
    assert config.mlp_dropout == config.attention_dropout == 0.1 and config.classifier_pooling == "mean"
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert not [n for n, p in model.named_parameters() if n.endswith(".bias") and "layers." in n]


def test_bert_masked_lm():
    torch.manual_seed(0)
    cfg = _tiny("bert", dropout=0.2)
    shape = model_shape(cfg, FakeTokenizer(100, bos=None, eos=None, pad=0), block_size=16)
    model = build_model(cfg, shape, AutoModelForMaskedLM)
    config = model.config
    assert config.model_type == "bert"
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 2)
    assert (config.intermediate_size, config.max_position_embeddings, config.type_vocab_size) == (128, 16, 2)
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.2, 0.2)
    assert config.pad_token_id == 0
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    model.eval()
    input_ids = torch.randint(1, 100, (2, 10))
    labels = torch.full_like(input_ids, -100)
    labels[:, 3] = input_ids[:, 3]
    with torch.no_grad():
        out = model(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids), labels=labels)
    assert out.logits.shape == (2, 10, 128)
    # the loss scores only the labelled positions, without shifting
    expected = F.cross_entropy(out.logits[:, 3], input_ids[:, 3])
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen3", "bert", "modernbert"])
def test_config_updates_choose_the_classification_head(arch):
    cfg = _tiny(arch)
    shape = model_shape(cfg, FakeTokenizer(100, bos=0, eos=0, pad=1), block_size=16)
    model = build_model(cfg, shape, AutoModelForSequenceClassification, num_labels=3)
    assert model.config.num_labels == 3
    model.eval()
    with torch.no_grad():
        out = model(input_ids=torch.randint(2, 100, (4, 6)), attention_mask=torch.ones(4, 6, dtype=torch.long))
    assert out.logits.shape == (4, 3)


def test_each_architecture_checks_only_its_own_fields():
    bilstm = load_config(
        overrides=["model.arch=bilstm", "model.hidden_size=30", "model.num_heads=4", "objective.name=cls"]
    )
    assert bilstm.model.hidden_size == 30  # an LSTM has no attention heads to divide the width
    with pytest.raises(ConfigError, match="always ties T5's output layer"):
        load_config(overrides=["model.arch=t5", "model.tie_word_embeddings=false", "objective.name=span"])
    with pytest.raises(ConfigError, match="'model.attention' is for lstm_seq2seq, not 'gpt2'"):
        load_config(overrides=["model.attention=dot"])
    cfg = load_config(overrides=["model.arch=lstm_seq2seq", "model.attention=bahdanau", "objective.name=seq2seq"])
    shape = ModelShape(vocab_size=64, max_positions=16, bos_token_id=1, eos_token_id=1, pad_token_id=0)
    assert build_model(cfg.model, shape, AutoModelForSeq2SeqLM).config.attention_type == "bahdanau"


@pytest.mark.parametrize("arch", ["qwen3", "bert"])
def test_eager_attention_computes_what_sdpa_does_and_is_not_exported(arch, tmp_path):
    auto_class = AutoModelForCausalLM if arch == "qwen3" else AutoModelForMaskedLM
    shape = model_shape(_tiny(arch), FakeTokenizer(64), 8)
    torch.manual_seed(0)
    eager = build_model(_tiny(arch, attn_implementation="eager"), shape, auto_class).eval()
    torch.manual_seed(0)
    fused = build_model(_tiny(arch), shape, auto_class).eval()
    assert (eager.config._attn_implementation, fused.config._attn_implementation) == ("eager", "sdpa")
    ids = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(eager(input_ids=ids).logits, fused(input_ids=ids).logits)
    eager.save_pretrained(tmp_path)
    assert "attn" not in (tmp_path / "config.json").read_text()  # the export loads with the reader's default
    assert auto_class.from_pretrained(tmp_path).config._attn_implementation == "sdpa"
    tuned = init_model(_tiny(arch, attn_implementation="eager"), tmp_path, auto_class, FakeTokenizer(64), 8)
    assert tuned.config._attn_implementation == "eager"  # fine-tuning an export takes the setting too


def test_attention_implementation_is_refused_for_baselines():
    with pytest.raises(ConfigError, match="'model.attn_implementation' is for transformers, not the 'lstm_lm'"):
        load_config(overrides=["model.arch=lstm_lm", "model.attn_implementation=eager"])
    with pytest.raises(ConfigError, match="'model.attn_implementation' is 'flash'; valid choices"):
        load_config(overrides=["model.attn_implementation=flash"])
