"""Parameter groups (which tensor gets which learning rate and decay) and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

from pipelines.config import ModelConfig, OptimConfig
from pipelines.errors import PipelineError
from pipelines.models import ModelShape, build_model
from pipelines.training import loop
from pipelines.training.optimizer import WarmupStableDecay, build_optimizer, build_scheduler, param_groups

SHAPE = ModelShape(vocab_size=64, max_positions=32, bos_token_id=None, eos_token_id=1, pad_token_id=0)


def _model(arch: str, auto_class, **fields):
    return build_model(ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, **fields), SHAPE, auto_class)


def _lr_of(groups: list[dict], tensor: torch.Tensor) -> float:
    return next(g["lr"] for g in groups if any(p is tensor for p in g["params"]))


def test_t5_queries_and_table_get_their_own_rates_and_every_tensor_one_group():
    model = _model("t5", AutoModelForSeq2SeqLM)
    groups = param_groups(model, OptimConfig(learning_rate=1e-3))
    d_kv, d = model.config.d_kv, model.config.d_model
    assert _lr_of(groups, model.encoder.block[0].layer[0].SelfAttention.q.weight) == pytest.approx(
        1e-3 / math.sqrt(d_kv)
    )
    assert _lr_of(groups, model.decoder.block[1].layer[1].EncDecAttention.q.weight) == pytest.approx(
        1e-3 / math.sqrt(d_kv)
    )
    assert _lr_of(groups, model.shared.weight) == pytest.approx(1e-3 * math.sqrt(d))  # the tied head with it
    assert _lr_of(groups, model.encoder.block[0].layer[0].SelfAttention.k.weight) == 1e-3
    assert groups[0]["lr"] == 1e-3  # the logged `learning_rate` is the plain matrices'
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))


def test_config_scales_override_the_architectures_and_vectors_are_never_decayed():
    model = _model("t5", AutoModelForSeq2SeqLM)
    groups = param_groups(model, OptimConfig(learning_rate=1e-3, query_lr_scale=1.0, embedding_lr_scale=2.0))
    assert _lr_of(groups, model.encoder.block[0].layer[0].SelfAttention.q.weight) == 1e-3
    assert _lr_of(groups, model.shared.weight) == 2e-3
    assert all(g["weight_decay"] == 0.0 for g in groups if all(p.dim() < 2 for p in g["params"]))
    assert all(g["weight_decay"] == 0.1 for g in groups if all(p.dim() >= 2 for p in g["params"]))


@pytest.mark.parametrize(("arch", "auto_class"), [("gpt2", AutoModelForCausalLM), ("llama", AutoModelForCausalLM),
                                                  ("bert", AutoModelForMaskedLM)])  # fmt: skip
def test_other_architectures_keep_one_rate_by_default(arch, auto_class):
    groups = param_groups(_model(arch, auto_class), OptimConfig(learning_rate=1e-3))
    assert {g["lr"] for g in groups} == {1e-3}


def test_a_query_scale_for_a_model_without_separate_queries_is_refused():
    with pytest.raises(PipelineError, match="no separate query weights"):
        param_groups(_model("gpt2", AutoModelForCausalLM), OptimConfig(query_lr_scale=0.5))  # fused q, k, v


def test_adamw_is_fused_by_default_on_cpu_and_steps_as_torchs_loop_does():
    models = {fused: _model("bert", AutoModelForMaskedLM) for fused in (True, False)}
    models[False].load_state_dict(models[True].state_dict())
    before = {name: p.detach().clone() for name, p in models[True].named_parameters()}
    optimizers = {}
    for fused, model in models.items():
        torch.manual_seed(0)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        cfg = OptimConfig(learning_rate=1e-2) if fused else OptimConfig(learning_rate=1e-2, fused=False)
        optimizers[fused] = build_optimizer(model, cfg)
        for _ in range(3):
            optimizers[fused].step()
    assert optimizers[True].defaults["fused"] and not optimizers[False].defaults["fused"]
    for (name, a), b in zip(models[True].named_parameters(), models[False].parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert all(not torch.equal(before[name], p) for name, p in models[True].named_parameters())


def _rates(cfg: OptimConfig, max_steps: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.learning_rate)
    scheduler = build_scheduler(optimizer, cfg, max_steps, num_processes=1)
    rates = []
    for _ in range(max_steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_stable_decay_holds_the_peak_then_decays_over_its_fraction():
    cfg = OptimConfig(learning_rate=1.0, warmup_steps=10, lr_scheduler_type="warmup_stable_decay", decay_fraction=0.25)
    rates = _rates(cfg, 100)
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.5)  # linear warmup
    assert rates[10:75] == [1.0] * 65  # stable at the peak until the last quarter
    assert rates[75] == pytest.approx(1.0) and rates[99] < 0.15  # then down towards zero
    assert all(a >= b for a, b in zip(rates[75:], rates[76:], strict=False))
    # 1 - sqrt: halfway through the decay the rate is 1 - sqrt(0.5).
    assert rates[87] == pytest.approx(1 - math.sqrt(12 / 25), abs=1e-6)


def test_a_time_triggered_decay_starts_now_for_its_steps_and_survives_a_checkpoint():
    cfg = OptimConfig(learning_rate=1.0, warmup_steps=10, lr_scheduler_type="warmup_stable_decay", decay_fraction=0.2)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, max_steps=100_000, num_processes=2)  # 2 scheduler steps per step
    schedule = scheduler.lr_lambdas[0]
    assert not schedule.decaying(400)
    assert schedule.decay_now(400, 100) == 500
    assert schedule.decaying(400) and schedule(800) == 1.0 and schedule(1000) == 0.0
    assert schedule(900) == pytest.approx(1 - math.sqrt(0.5))
    restored = build_scheduler(optimizer, cfg, max_steps=100_000, num_processes=2)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.lr_lambdas[0].last_step == 500 and restored.lr_lambdas[0](900) == schedule(900)


def test_a_time_budget_sizes_its_decay_by_the_step_rate_after_the_first_step(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: now[0])
    clock = loop.Clock(before=0.0, tokens_seen=0)
    now[0] = 4.0  # the first step compiles: 4 s
    assert clock.step_rate(1) is None
    now[0] = 4.0 + 10 * 0.05  # then 10 steps of 50 ms, and 1 s of evaluation that does not count
    with clock.paused():
        now[0] += 1.0
    assert clock.step_rate(11) == pytest.approx(20.0)
    # 35 s of a 50 s budget trained at step 620: the 15 s left hold 300 steps at 20 a second. Without a rate yet,
    # the decay's share of the steps so far: 700 * 0.3 / 0.7.
    assert loop.decay_steps(620, trained=35.0, rate=20.0, max_runtime=50.0, decay_fraction=0.3) == 300
    assert loop.decay_steps(700, trained=35.0, rate=None, max_runtime=50.0, decay_fraction=0.3) == pytest.approx(300)
    assert loop.decay_steps(700, trained=51.0, rate=20.0, max_runtime=50.0, decay_fraction=0.3) == 0  # none left


def test_a_time_budgeted_decay_ends_sooner_when_its_steps_slow_down():
    schedule = WarmupStableDecay(warmup_steps=10, max_steps=100_000, decay_fraction=0.3)
    one_process = PartialState()  # logging needs accelerate's state
    # 35 s of a 50 s budget trained at step 700, at 20 steps a second: a decay of 300 steps, to step 1000.
    assert not loop._time_budget(one_process, 50.0, 0.3, schedule, 700, trained=35.0, rate=20.0)
    assert schedule.decay_start == 700 and schedule.last_step == 1000
    loop._time_budget(one_process, 50.0, 0.3, schedule, 800, trained=40.0, rate=20.0)  # on pace: unchanged
    assert schedule.last_step == 1000
    before = [schedule(step) for step in range(700, 851)]
    # The next 50 steps took 5 s instead of 2.5: the 5 s left hold 100 steps at 20 a second, not 150.
    loop._time_budget(one_process, 50.0, 0.3, schedule, 850, trained=45.0, rate=20.0)
    assert schedule.last_step == 950 and schedule(950) == 0.0
    rates = before + [schedule(step) for step in range(851, 951)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))  # the rate only falls, faster now
    loop._time_budget(one_process, 50.0, 0.3, schedule, 900, trained=49.0, rate=60.0)  # faster again: never later
    assert schedule.last_step == 950
    loop._time_budget(one_process, 50.0, 0.3, schedule, 940, trained=50.5, rate=20.0)  # out of time: ends here
    assert schedule.last_step == 940


def test_a_decayed_schedule_planned_again_holds_the_peak_until_its_new_decay():
    schedule = WarmupStableDecay(warmup_steps=10, max_steps=100, decay_fraction=0.2)
    schedule.decay_now(50, 10)  # a time budget ended the run early, on a decay
    schedule.plan(200)  # the run is extended to 200 steps
    assert schedule.last_step == 200 and not schedule.decaying(100)
    assert schedule(100) == 1.0 and schedule(160) == 1.0 and schedule(180) == pytest.approx(1 - math.sqrt(0.5))
