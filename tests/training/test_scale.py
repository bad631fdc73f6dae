"""Scale-out pieces that run on CPU: launcher configs, FLOP counts, accumulation equivalence, device checks."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import ClusterConfig
from torch._dynamo.utils import counters
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from pipelines.config import load_config
from pipelines.errors import PipelineError
from pipelines.pretrain import pretrain
from pipelines.training import loop
from pipelines.training.throughput import flops_per_token, measured_flops_per_token, peak_memory_gb
from tests.conftest import REPO

LAUNCHERS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.name)
def test_launcher_configs_are_valid_accelerate_configs(path):
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.num_processes >= 1 and config.num_machines >= 1
    assert f"--config_file configs/accelerate/{path.name}" in path.read_text()  # documents its own command
    if config.distributed_type.value == "DEEPSPEED" and config.deepspeed_config["zero_stage"] == 3:
        assert config.deepspeed_config["zero3_save_16bit_model"] is True  # the export gets full weights
    if config.distributed_type.value == "FSDP":
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


def test_launcher_configs_cover_the_documented_setups():
    kinds = {ClusterConfig.from_yaml_file(str(p)).distributed_type.value for p in LAUNCHERS}
    assert {"NO", "MULTI_GPU", "FSDP", "DEEPSPEED"} <= kinds


def test_flops_per_token_matches_a_hand_count():
    V, T, d, L = 64, 16, 32, 2  # noqa: N806 - the usual symbols
    model = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=T, n_embd=d, n_layer=L, n_head=2))
    per_layer = (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (2 * d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    # Token table (tied to the output projection) is a matmul; the position table is a lookup.
    matmul = V * d + L * per_layer + 2 * d
    assert flops_per_token(model, T) == 6 * matmul + 12 * L * d * T


def test_measured_flops_match_a_hand_count_for_a_tiny_gpt():
    V, T, d, L = 64, 16, 32, 2  # noqa: N806
    model = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=T, n_embd=d, n_layer=L, n_head=2))
    ids = torch.randint(0, V, (2, T))
    # Per token, forward: 2 FLOPs per weight of q/k/v, out, MLP up and down (12·d² a layer) and the tied head
    # (V·d); attention scores and the weighted sum: 2·2·T·d a layer. Backward is twice the forward.
    forward = 2 * (L * 12 * d * d + V * d) + L * 4 * T * d
    assert measured_flops_per_token(model, {"input_ids": ids, "labels": ids}) == 3 * forward
    assert model.transformer.h[0].attn.c_attn.weight.grad is None  # counted on a copy: the run's model untouched


@pytest.mark.parametrize("seq2seq", [False, True])
def test_a_training_forward_returns_its_loss_alone_and_evaluation_everything(seq2seq):
    # the loop reads only the loss; without the logits, accelerate has no vocabulary-wide tensor to convert to fp32
    if seq2seq:
        config = T5Config(vocab_size=64, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2, dropout_rate=0.0,
                          decoder_start_token_id=0)  # fmt: skip
        model = T5ForConditionalGeneration(config)
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2,
                                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))  # fmt: skip
    ids = torch.randint(2, 64, (2, 16))
    batch = {"input_ids": ids, "labels": ids}
    expected = model.eval()(**batch)
    loop.set_training_forward(model, loss_only=True, compiled=False)
    trained = model.train()(**batch)
    assert trained.logits is None and torch.allclose(trained.loss, expected.loss)
    assert torch.equal(model.eval()(**batch).logits, expected.logits)
    if not seq2seq:  # no labels, no loss of the model's own: the whole output
        assert torch.equal(model.train()(input_ids=ids).logits, expected.logits)
    copy.deepcopy(model)(**batch).loss.backward()  # a copy (the FLOP count's) runs itself, not the model
    assert all(p.grad is None for p in model.parameters())


def test_counting_flops_leaves_the_random_state_alone():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2, resid_pdrop=0.5))
    ids = torch.randint(0, 64, (2, 16))
    before = torch.get_rng_state()
    measured_flops_per_token(model, {"input_ids": ids, "labels": ids})  # dropout draws happen in the copy only
    assert torch.equal(torch.get_rng_state(), before)


def test_measured_flops_count_the_t5_decoder():
    V, d, inner, ff, L = 64, 32, 32, 64, 2  # noqa: N806 - vocabulary, width, heads × d_kv, gated MLP width, layers
    S, U = 16, 8  # noqa: N806 - encoder and decoder tokens
    model = T5ForConditionalGeneration(T5Config(vocab_size=V, d_model=d, d_kv=16, d_ff=ff, num_layers=L, num_heads=2,
                                                feed_forward_proj="gated-gelu", decoder_start_token_id=0))  # fmt: skip
    ids = torch.randint(2, V, (1, S))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, :U]}
    attention, mlp = 4 * d * inner, 3 * d * ff  # q, k, v, o; wi_0, wi_1, wo
    weights = S * L * (attention + mlp)  # encoder
    weights += U * L * (attention + 2 * d * inner + mlp) + S * L * 2 * d * inner  # decoder; cross k, v read the source
    weights += U * V * d  # the tied output layer, on decoder tokens
    scores = L * 4 * inner * (S * S + U * U + U * S)  # encoder self, decoder self, cross: scores and weighted sums
    forward = 2 * weights + scores
    assert measured_flops_per_token(model, batch) == 3 * forward / S  # per input (encoder) token, as the loop counts
    assert flops_per_token(model, S) > 0  # the analytic fallback no longer subtracts the shared table three times


def test_gradient_accumulation_equals_a_larger_batch(tiny_overrides, tmp_path):
    common = [*tiny_overrides, "train.max_steps=6", "train.eval_steps=6", "train.save_steps=6"]
    runs = {"big": ["train.per_device_train_batch_size=8", "train.gradient_accumulation_steps=1"],
            "accumulated": ["train.per_device_train_batch_size=4", "train.gradient_accumulation_steps=2"]}  # fmt: skip
    losses = {}
    for name, extra in runs.items():
        cfg = load_config(None, [*common, *extra, f"output_dir={tmp_path / name}"])
        results = pretrain(cfg)
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in records if "loss" in r]
        assert results["tokens_seen"] == 6 * 8 * 32
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert losses["accumulated"] == pytest.approx(losses["big"], rel=1e-4)


def test_throughput_figures_are_reported(tiny_overrides, tmp_path):
    cfg = load_config(None, [*tiny_overrides, "train.max_steps=4", "train.peak_flops=1e12",
                             "train.gradient_checkpointing=true", "optim.fused=true"])  # fmt: skip
    results = pretrain(cfg)
    assert results["flops_per_token"] > 0 and results["train_flops"] == results["flops_per_token"] * 4 * 8 * 32
    expected_mfu = results["flops_per_token"] * results["train_tokens_per_second_per_device"] / 1e12
    assert results["mfu"] == pytest.approx(expected_mfu)
    assert 0 < results["peak_memory_gb"] < 64 and peak_memory_gb(torch.device("cpu")) > 0
    records = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert all("mfu" in r and "tokens_per_second_per_device" in r for r in records if "loss" in r)
    assert all(math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 for r in records if "loss" in r)


def test_more_processes_than_gpus_is_refused(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(PipelineError, match="4 processes per machine but only 2 GPU"):
        loop.check_devices()


def test_missing_deepspeed_is_a_clear_error(monkeypatch):
    pytest.importorskip("accelerate")
    if __import__("importlib").util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(PipelineError, match="not installed"):
        loop.build_accelerator(load_config().train, "unused", 0)


def test_bf16_where_unsupported_refuses_or_falls_back(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    with pytest.raises(PipelineError, match="cannot do it"):
        loop._supported_precision(load_config(None, ["train.mixed_precision=bf16"]).train)
    fallback = load_config(None, ["train.mixed_precision=bf16", "train.mixed_precision_fallback=true"]).train
    with pytest.warns(UserWarning, match="training in fp32"):
        assert loop._supported_precision(fallback) == "no"


def test_bf16_on_a_cpu_that_emulates_it_warns(monkeypatch):
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    bf16 = load_config(None, ["train.mixed_precision=bf16"]).train
    monkeypatch.setattr(loop, "cpu_computes_bfloat16", lambda: False)
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        assert loop._supported_precision(bf16) == "bf16"
    monkeypatch.setattr(loop, "cpu_computes_bfloat16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loop._supported_precision(bf16) == "bf16"


def test_torch_compile_without_a_cpu_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    train = load_config(None, ["train.torch_compile=true"]).train
    with pytest.raises(PipelineError, match="needs a C\\+\\+ compiler"):
        loop.build_accelerator(train, "unused", 0)


def test_torch_compile_trains_repeatably_and_exports(tiny_overrides, tmp_path, monkeypatch):
    from pipelines.evaluate_export import evaluate_export

    # One graph per run, however many runs in a process: evaluation runs eagerly and each run starts from a clean
    # compiler state. Past the limit dynamo would fall back to eager silently; here it raises instead.
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    counters.clear()
    losses = []
    for run in (1, 2):
        cfg = load_config(None, [*tiny_overrides, "train.torch_compile=true", "train.max_steps=4", "train.eval_steps=2",
                                 "train.eval_max_batches=null", f"output_dir={tmp_path / f'run{run}'}"])  # fmt: skip
        results = pretrain(cfg)
        assert results["eval_loss"] < 7.0
        losses.append(results["eval_loss"])
    # The same seed repeats the run exactly (train.deterministic: inductor's atomic adds would not).
    assert losses[0] == losses[1]
    assert not counters["graph_break"]  # one whole graph: GPT-2's loss warning would split it
    # The export holds the trained weights under their plain names (a compile wrapper's `_orig_mod.` prefix, as
    # accelerate's compiled model had, would leave a freshly initialised model at load time), so it scores what the
    # run's own evaluation scored.
    exported = evaluate_export(cfg, cfg.output_dir, tmp_path / "eval.json")
    assert exported["loss"] == pytest.approx(results["eval_loss"], rel=1e-4)
