"""`EarlyStopping`: direction per metric, patience, the in-memory copy of the best weights, resumable state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipelines.config import ConfigError, load_config
from pipelines.errors import PipelineError
from pipelines.training.loop import EarlyStopping


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def _feed(stopper: EarlyStopping, model: nn.Module, values: list[float], metric: str | None = None) -> list[bool]:
    """Report one evaluation per value (steps 10, 20, ...) and return `should_stop` after each."""
    stops = []
    for i, value in enumerate(values):
        stopper.update((i + 1) * 10, {metric or stopper.metric: value, "examples": 100}, model)
        stops.append(stopper.should_stop)
    return stops


def test_patience_none_never_stops(model):
    stopper = EarlyStopping(None, "loss")
    assert _feed(stopper, model, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == [False] * 6
    assert stopper.best is None and stopper.best_weights is None and stopper.bad == 0
    stopper.update(70, {"accuracy": 0.5}, model)  # not even the metric name is checked when disabled
    assert not stopper.should_stop


def test_loss_lower_is_better(model):
    stopper = EarlyStopping(2, "loss")
    assert _feed(stopper, model, [3.0, 2.0, 2.5, 1.0, 1.5, 1.2]) == [False, False, False, False, False, True]
    assert stopper.best_step == 40
    assert stopper.best_eval == {"loss": 1.0, "examples": 100}
    assert stopper.describe() == "loss=1.0000 at step 40"


@pytest.mark.parametrize("metric", ["perplexity", "bits_per_byte"])
def test_other_loss_like_metrics_are_lower_is_better(model, metric):
    stopper = EarlyStopping(1, metric)
    assert _feed(stopper, model, [5.0, 4.0, 6.0]) == [False, False, True]
    assert stopper.best_step == 20


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro", "matthews_correlation", "token_accuracy"])
def test_scores_higher_is_better(model, metric):
    stopper = EarlyStopping(2, metric)
    assert _feed(stopper, model, [0.5, 0.7, 0.6, 0.8, 0.8, 0.75]) == [False, False, False, False, False, True]
    assert stopper.best_step == 40  # an equal value (0.8 at step 50) is not an improvement
    assert stopper.describe() == f"{metric}=0.8000 at step 40"


def test_stops_after_patience_evaluations_without_improvement(model):
    stopper = EarlyStopping(3, "loss")
    stops = _feed(stopper, model, [1.0, 1.1, 1.2, 1.3, 1.4])
    assert stops == [False, False, False, True, True]
    assert stopper.bad == 4


def test_improvement_resets_the_count(model):
    stopper = EarlyStopping(2, "loss")
    assert _feed(stopper, model, [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.9]) == [False] * 6 + [True]
    assert stopper.bad == 2 and stopper.best_step == 50


def test_patience_zero_is_rejected():
    with pytest.raises(ConfigError, match="early_stopping_patience"):
        load_config(overrides=["train.early_stopping_patience=0"])


def test_keeps_a_cpu_copy_of_the_best_weights(model):
    stopper = EarlyStopping(5, "loss")
    stopper.update(10, {"loss": 1.0}, model)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # training moves on; later evaluations are worse
        model.weight.add_(1.0)
        model.bias.fill_(7.0)
    stopper.update(20, {"loss": 2.0}, model)
    assert set(stopper.best_weights) == {"weight", "bias"}
    for name, tensor in stopper.best_weights.items():
        assert tensor.device.type == "cpu"
        assert torch.equal(tensor, best[name])
        assert not torch.equal(tensor, model.state_dict()[name])
        assert tensor.data_ptr() != model.state_dict()[name].data_ptr()  # a copy, not a view
    model.load_state_dict(stopper.best_weights)
    assert torch.equal(model.weight, best["weight"])


def test_best_weights_follow_the_latest_improvement(model):
    stopper = EarlyStopping(5, "accuracy")
    stopper.update(10, {"accuracy": 0.5}, model)
    with torch.no_grad():
        model.bias.fill_(3.0)
    stopper.update(20, {"accuracy": 0.9}, model)
    with torch.no_grad():
        model.bias.fill_(-3.0)
    stopper.update(30, {"accuracy": 0.1}, model)
    assert stopper.best_weights["bias"].tolist() == [3.0, 3.0]
    assert stopper.best_step == 20


def test_state_round_trips_through_the_constructor(model):
    stopper = EarlyStopping(3, "accuracy")
    _feed(stopper, model, [0.6, 0.8, 0.7, 0.75])
    state = stopper.state()
    assert {k: state[k] for k in ("best", "best_step", "bad")} == {"best": 0.8, "best_step": 20, "bad": 2}
    assert state["best_eval"]["accuracy"] == 0.8
    resumed = EarlyStopping(3, "accuracy", saved=state)
    assert (resumed.best, resumed.best_step, resumed.bad) == (0.8, 20, 2)
    assert resumed.state() == state
    assert resumed.describe() == stopper.describe()
    # the count goes on where it left off: one more bad evaluation stops
    resumed.update(50, {"accuracy": 0.79}, model)
    assert resumed.should_stop
    # and a resumed run still needs a real improvement
    again = EarlyStopping(3, "accuracy", saved=state)
    again.update(50, {"accuracy": 0.81}, model)
    assert (again.bad, again.best_step) == (0, 50)


def test_state_round_trip_for_lower_is_better(model):
    stopper = EarlyStopping(2, "loss")
    _feed(stopper, model, [2.0, 1.5, 1.7])
    resumed = EarlyStopping(2, "loss", saved=stopper.state())
    assert resumed.describe() == "loss=1.5000 at step 20"
    resumed.update(40, {"loss": 1.6}, model)  # worse than 1.5: the second bad evaluation
    assert resumed.should_stop
    fresh = EarlyStopping(2, "loss", saved=stopper.state())
    fresh.update(40, {"loss": 1.4}, model)
    assert not fresh.should_stop and fresh.best_step == 40


def test_resumed_stopper_can_restore_the_best_weights(model):
    stopper = EarlyStopping(2, "loss")
    stopper.update(10, {"loss": 1.0}, model)  # the best evaluation
    best_bias = model.bias.detach().clone()
    with torch.no_grad():
        model.bias.add_(1.0)
    stopper.update(20, {"loss": 2.0}, model)  # worse; a checkpoint is written here, then the run is resumed
    # The loop saves best_weights in the checkpoint (EarlyStopping.WEIGHTS_FILE) and hands them back on resume.
    resumed = EarlyStopping(2, "loss", saved=stopper.state())
    resumed.best_weights = stopper.best_weights
    resumed.update(30, {"loss": 3.0}, model)
    assert resumed.should_stop
    assert resumed.best_weights is not None
    assert torch.equal(resumed.best_weights["bias"], best_bias)


def test_empty_saved_state_is_a_fresh_start(model):
    stopper = EarlyStopping(2, "loss", saved={})
    assert stopper.state() == {"best": None, "best_step": None, "bad": 0, "best_eval": {}}


def test_unknown_metric_lists_reported_metrics(model):
    stopper = EarlyStopping(2, "f1")
    with pytest.raises(PipelineError, match=r"metric_for_best_model is 'f1', but evaluation reports: loss, accuracy"):
        stopper.update(10, {"loss": 0.5, "accuracy": 0.9}, model)
    assert stopper.best is None and stopper.best_weights is None


def test_progress_watch_names_every_evaluation_that_did_not_improve(caplog):
    from accelerate import PartialState

    from pipelines.training.loop import ProgressWatch

    PartialState(cpu=True)  # accelerate's logger, as inside a run
    watch = ProgressWatch()
    with caplog.at_level("WARNING"):
        for step, loss in [(100, 3.0), (200, 2.0), (300, 2.5), (400, 2.4), (500, 2.4)]:
            watch.update(step, {"loss": loss})
        watch.update(600, {"accuracy": 0.9})  # no loss (a classifier's extra metric only): nothing to judge
    assert watch.stalled == [300, 500]  # 2.4 after 2.5 is an improvement; equal is not
    messages = [r.getMessage() for r in caplog.records]
    assert any("rose from 2.0000 (step 200) to 2.5000 (step 300)" in m for m in messages)
    assert any("did not fall from 2.4000 (step 400) to 2.4000 (step 500)" in m for m in messages)
    assert ProgressWatch([[100, 3.0], [200, 3.5]]).stalled == [200]  # restored from a checkpoint's JSON lists
