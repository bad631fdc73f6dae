"""Offline classification metrics (hand arithmetic = scikit-learn = hub keys) and `evaluate_classification`."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from sklearn import metrics as skm
from torch import nn

from pipelines.errors import PipelineError
from pipelines.evaluation.classification import (
    LOCAL_METRICS,
    MetricSpec,
    evaluate_classification,
    load_metric,
    load_metrics,
    parse_metric,
)

BUNDLED = ["accuracy", "chrf", "exact_match", "f1", "matthews_correlation", "precision", "recall", "rouge", "sacrebleu"]

# Binary hand example: TP = 2 (rows 0, 1), FP = 1 (row 2), FN = 1 (row 3), TN = 2 (rows 4, 5)
REFS = [1, 1, 0, 1, 0, 0]
PREDS = [1, 1, 1, 0, 0, 0]
TP, FP, FN, TN = 2, 1, 1, 2
P1, R1 = TP / (TP + FP), TP / (TP + FN)  # class 1: precision 2/3, recall 2/3
P0, R0 = TN / (TN + FN), TN / (TN + FP)  # class 0: precision 2/3, recall 2/3
# a skewed example where binary, macro and weighted averages differ
REFS_SKEW = [1, 0, 0, 0, 0, 1, 1, 0]
PREDS_SKEW = [1, 1, 0, 0, 0, 0, 0, 0]
# skew: class 1 has TP 1, FP 1, FN 2 → precision 1/2, recall 1/3, F1 2·(1/2·1/3)/(1/2+1/3) = 2/5
# class 0 has TP 4, FP 2, FN 1 → precision 4/6, recall 4/5, F1 2·(2/3·4/5)/(2/3+4/5) = 8/11
F1_SKEW_1, F1_SKEW_0 = 2 / 5, 8 / 11

HAND = {
    "accuracy": (REFS, PREDS, {}, 4 / 6),
    "precision": (REFS, PREDS, {}, 2 / 3),
    "recall": (REFS, PREDS, {}, 2 / 3),
    "f1": (REFS, PREDS, {}, 2 * P1 * R1 / (P1 + R1)),
    # MCC = (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 − 1) / sqrt(3·3·3·3) = 1/3
    "matthews_correlation": (REFS, PREDS, {}, (TP * TN - FP * FN) / math.sqrt(3 * 3 * 3 * 3)),
    "f1_macro": (REFS_SKEW, PREDS_SKEW, {"average": "macro"}, (F1_SKEW_1 + F1_SKEW_0) / 2),
    "f1_weighted": (REFS_SKEW, PREDS_SKEW, {"average": "weighted"}, (3 * F1_SKEW_1 + 5 * F1_SKEW_0) / 8),
    "f1_micro": (REFS_SKEW, PREDS_SKEW, {"average": "micro"}, 5 / 8),  # micro F1 = accuracy for single-label
    "precision_macro": (REFS_SKEW, PREDS_SKEW, {"average": "macro"}, (1 / 2 + 4 / 6) / 2),
    "recall_macro": (REFS_SKEW, PREDS_SKEW, {"average": "macro"}, (1 / 3 + 4 / 5) / 2),
    "f1_skew_binary": (REFS_SKEW, PREDS_SKEW, {}, F1_SKEW_1),
}
SKLEARN = {
    "accuracy": skm.accuracy_score,
    "precision": skm.precision_score,
    "recall": skm.recall_score,
    "f1": skm.f1_score,
    "matthews_correlation": skm.matthews_corrcoef,
}


@pytest.fixture(scope="module")
def loaded() -> dict[str, tuple[MetricSpec, object]]:
    names = [n for n in HAND if n != "f1_skew_binary"]
    return {spec.name: (spec, metric) for spec, metric in load_metrics(names)}


def test_bundled_modules():
    assert sorted(p.name for p in LOCAL_METRICS.iterdir() if p.is_dir() and not p.name.startswith("_")) == BUNDLED


@pytest.mark.parametrize("name", [n for n in HAND if n != "f1_skew_binary"])
def test_metric_equals_hand_value_and_sklearn(loaded, name):
    refs, preds, kwargs, hand = HAND[name]
    spec, metric = loaded[name]
    assert spec.kwargs == kwargs
    result = metric.compute(predictions=preds, references=refs, **spec.kwargs)
    assert set(result) == {spec.module}  # the hub module's result key: accuracy, f1, precision, recall, ...
    assert isinstance(result[spec.module], float)
    assert result[spec.module] == pytest.approx(hand, abs=1e-12)
    assert result[spec.module] == pytest.approx(SKLEARN[spec.module](refs, preds, **kwargs), abs=1e-12)


def test_averages_really_differ(loaded):
    # guards the hand example: a wrong `average` would not go unnoticed
    values = {HAND[n][3] for n in ("f1_macro", "f1_weighted", "f1_micro", "f1_skew_binary")}
    assert len(values) == 4
    spec, f1 = loaded["f1_macro"]
    binary = f1.compute(predictions=PREDS_SKEW, references=REFS_SKEW)["f1"]
    assert binary == pytest.approx(F1_SKEW_1)
    assert f1.compute(predictions=PREDS_SKEW, references=REFS_SKEW, **spec.kwargs)["f1"] != pytest.approx(binary)


def test_perfect_and_inverted_predictions(loaded):
    _, mcc = loaded["matthews_correlation"]
    _, acc = loaded["accuracy"]
    assert mcc.compute(predictions=REFS, references=REFS)["matthews_correlation"] == pytest.approx(1.0)
    inverted = [1 - r for r in REFS]
    assert mcc.compute(predictions=inverted, references=REFS)["matthews_correlation"] == pytest.approx(-1.0)
    assert acc.compute(predictions=inverted, references=REFS)["accuracy"] == 0.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("f1_macro", MetricSpec("f1_macro", "f1", {"average": "macro"})),
        ("precision_weighted", MetricSpec("precision_weighted", "precision", {"average": "weighted"})),
        ("recall_micro", MetricSpec("recall_micro", "recall", {"average": "micro"})),
        ("f1_binary", MetricSpec("f1_binary", "f1", {"average": "binary"})),
        ("f1", MetricSpec("f1", "f1", {})),
        ("accuracy", MetricSpec("accuracy", "accuracy", {})),
        ("matthews_correlation", MetricSpec("matthews_correlation", "matthews_correlation", {})),
        ("accuracy_macro", MetricSpec("accuracy_macro", "accuracy_macro", {})),  # only f1/precision/recall average
        ("f1_median", MetricSpec("f1_median", "f1_median", {})),
    ],
)
def test_parse_metric(name, expected):
    assert parse_metric(name) == expected


def test_unknown_metric_offline_lists_bundled(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PipelineError) as info:
        load_metrics(["accuracy", "no_such_metric"])
    message = str(info.value)
    assert "cannot load metric 'no_such_metric'" in message
    assert f"(bundled offline: {', '.join(BUNDLED)})" in message
    assert "\n" not in message


def test_load_metric_uses_the_bundled_module():
    metric = load_metric("accuracy")
    assert metric.name == "accuracy"
    assert metric.compute(predictions=[0, 1], references=[1, 1]) == {"accuracy": 0.5}


# --------------------------------------------------------------------------- evaluate_classification


class FixedLogitsClassifier(nn.Module):
    """Returns row `input_ids[:, 0]` of a fixed logits table, so each example has known logits."""

    def __init__(self, logits: list[list[float]]):
        super().__init__()
        self.register_buffer("table", torch.tensor(logits))
        self.calls: list[set[str]] = []

    def forward(self, input_ids, **kwargs):
        self.calls.append({"input_ids", *kwargs})
        return SimpleNamespace(logits=self.table[input_ids[:, 0]])


def _loader(labels: list[int], batch_size: int) -> list[dict[str, torch.Tensor]]:
    batches = []
    for start in range(0, len(labels), batch_size):
        rows = list(range(start, min(start + batch_size, len(labels))))
        ids = torch.tensor([[r, 0, 0] for r in rows])
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor(labels)[rows]})
    return batches


def _cross_entropy(row: list[float], label: int) -> float:
    return -(row[label] - math.log(sum(math.exp(v) for v in row)))


@pytest.fixture
def accelerator():
    return Accelerator(cpu=True)


def test_evaluate_classification_binary(accelerator, loaded):
    logits = [[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.5, 0.0], [-1.0, 1.0]]
    labels = [0, 1, 0, 0, 1]  # predictions: 0, 1, 1, 0, 1 → 4 of 5 right
    model = FixedLogitsClassifier(logits)
    metrics = [loaded["accuracy"], loaded["f1_macro"]]
    result = evaluate_classification(model, _loader(labels, batch_size=2), accelerator, metrics, num_labels=2)
    hand_loss = sum(_cross_entropy(row, y) for row, y in zip(logits, labels, strict=True)) / 5
    assert set(result) == {"loss", "examples", "accuracy", "f1_macro"}
    assert result["loss"] == pytest.approx(hand_loss, rel=1e-6)
    assert result["examples"] == 5
    assert result["accuracy"] == pytest.approx(4 / 5)
    # class 0: P 2/2, R 2/3, F1 4/5; class 1: P 2/3, R 2/2, F1 4/5
    assert result["f1_macro"] == pytest.approx(4 / 5)
    assert all(call == {"input_ids", "attention_mask"} for call in model.calls)  # labels are not passed


def test_evaluate_classification_three_labels_uses_macro_f1(accelerator, loaded):
    logits = [[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 0.0, 4.0]]
    labels = [0, 1, 2, 2, 0, 1]  # predictions: 0, 1, 2, 1, 0, 2
    _, f1 = loaded["f1_macro"]
    _, acc = loaded["accuracy"]
    metrics = [(parse_metric("accuracy"), acc), (parse_metric("f1"), f1)]
    model = FixedLogitsClassifier(logits)
    result = evaluate_classification(model, _loader(labels, batch_size=4), accelerator, metrics, num_labels=3)
    predictions = [0, 1, 2, 1, 0, 2]
    # per class: 0 → P 1, R 1, F1 1; 1 → P 1/2, R 1/2, F1 1/2; 2 → P 1/2, R 1/2, F1 1/2
    macro = (1 + 1 / 2 + 1 / 2) / 3
    assert result["f1"] == pytest.approx(macro)
    assert result["f1"] == pytest.approx(skm.f1_score(labels, predictions, average="macro"))
    assert result["accuracy"] == pytest.approx(4 / 6)
    hand_loss = sum(_cross_entropy(row, y) for row, y in zip(logits, labels, strict=True)) / 6
    assert result["loss"] == pytest.approx(hand_loss, rel=1e-6)


def test_evaluate_classification_restores_mode(accelerator, loaded):
    model = FixedLogitsClassifier([[1.0, 0.0]])
    model.train()
    evaluate_classification(model, _loader([0], 1), accelerator, [loaded["accuracy"]], num_labels=2)
    assert model.training
    model.eval()
    evaluate_classification(model, _loader([0], 1), accelerator, [loaded["accuracy"]], num_labels=2)
    assert not model.training
