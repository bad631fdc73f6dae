"""Token-weighted evaluation loss and the bits-per-byte conversion."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from pipelines.evaluation.lm import bits_per_byte, evaluate_lm


class FixedDistributionLM(nn.Module):
    """Predicts the same distribution `probs` at every position, whatever the input."""

    def __init__(self, probs: list[float]):
        super().__init__()
        self.register_buffer("log_probs", torch.tensor(probs).log())
        self.calls: list[set[str]] = []

    def forward(self, input_ids, **kwargs):
        self.calls.append({"input_ids", *kwargs})
        batch, length = input_ids.shape
        return SimpleNamespace(logits=self.log_probs.expand(batch, length, -1).clone())


class CountingLM(nn.Module):
    """At position t, puts probability `hit` on token (input_ids[t] + 1) mod V, the rest spread evenly."""

    def __init__(self, vocab: int, hit: float):
        super().__init__()
        self.vocab, self.hit = vocab, hit

    def forward(self, input_ids, **kwargs):
        miss = (1 - self.hit) / (self.vocab - 1)
        probs = torch.full((*input_ids.shape, self.vocab), miss)
        probs.scatter_(2, ((input_ids + 1) % self.vocab).unsqueeze(-1), self.hit)
        return SimpleNamespace(logits=probs.log())


@pytest.fixture
def accelerator():
    # function-scoped: accelerate's process-wide state may be reset between tests
    return Accelerator(cpu=True)


def _batch(labels: list[list[int]]) -> dict[str, torch.Tensor]:
    labels_t = torch.tensor(labels)
    input_ids = labels_t.clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": (labels_t != -100).long(), "labels": labels_t}


# --------------------------------------------------------------------------- bits_per_byte


def test_bits_per_byte_hand_example():
    # 2 nats per token, 4 bytes per token → 2 / ln 2 / 4 bits per byte
    assert bits_per_byte(2.0, 4.0) == pytest.approx(2.0 / math.log(2) / 4.0)
    assert bits_per_byte(2.0, 4.0) == pytest.approx(0.7213475204444817)
    # ln 2 nats per byte-sized token is exactly one bit per byte
    assert bits_per_byte(math.log(2), 1.0) == pytest.approx(1.0)
    assert bits_per_byte(0.0, 3.0) == 0.0


# --------------------------------------------------------------------------- evaluate_lm


def test_uniform_loss_is_log_vocab(accelerator):
    vocab = 10
    model = FixedDistributionLM([1 / vocab] * vocab)
    loader = [_batch([[1, 2, 3, 4], [5, 6, 7, 8]]), _batch([[9, 0, 1, 2]])]
    result = evaluate_lm(model, loader, accelerator, shift_labels=True)
    assert result["loss"] == pytest.approx(math.log(vocab), rel=1e-6)
    assert result["perplexity"] == pytest.approx(vocab, rel=1e-5)
    assert result["tokens"] == 3 * (4 - 1)  # T-1 predicted tokens per row
    assert set(result) == {"loss", "perplexity", "token_accuracy", "tokens"}
    assert model.calls and all(call == {"input_ids", "attention_mask"} for call in model.calls)  # no labels passed


def test_padding_labels_excluded(accelerator):
    model = FixedDistributionLM([0.25] * 4)
    loader = [_batch([[1, 2, 3, -100, -100], [0, 1, 2, 3, 0]])]
    result = evaluate_lm(model, loader, accelerator, shift_labels=True)
    assert result["tokens"] == 2 + 4
    assert result["loss"] == pytest.approx(math.log(4), rel=1e-6)


def test_loss_is_token_weighted_and_shifted(accelerator):
    probs = [0.1, 0.2, 0.3, 0.4]
    model = FixedDistributionLM(probs)
    rows = [[0, 3, 3, 3], [1, 2, -100, -100], [0, 0, 1, -100]]
    loader = [_batch(rows[:2]), _batch(rows[2:])]
    result = evaluate_lm(model, loader, accelerator, shift_labels=True)
    scored = [label for row in rows for label in row[1:] if label != -100]  # first position is never predicted
    assert scored == [3, 3, 3, 2, 0, 1]
    expected = sum(-math.log(probs[label]) for label in scored) / len(scored)
    assert result["tokens"] == len(scored)
    assert result["loss"] == pytest.approx(expected, rel=1e-6)
    assert result["perplexity"] == pytest.approx(math.exp(expected), rel=1e-6)
    # the argmax is always token 3: right for the three scored 3s only
    assert result["token_accuracy"] == pytest.approx(3 / 6)


def test_logits_at_t_score_label_at_t_plus_1(accelerator):
    # each row counts upwards, so a correctly shifted evaluation sees only hits
    model = CountingLM(vocab=5, hit=0.9)
    rows = [[0, 1, 2, 3, 4], [3, 4, 0, 1, -100]]
    batch = _batch(rows)
    result = evaluate_lm(model, [batch], accelerator, shift_labels=True)
    assert result["tokens"] == 4 + 3
    assert result["loss"] == pytest.approx(-math.log(0.9), rel=1e-5)
    assert result["token_accuracy"] == 1.0
    # without the shift, every scored label is a miss
    result = evaluate_lm(model, [_batch(rows)], accelerator, shift_labels=False)
    assert result["tokens"] == 5 + 4
    assert result["loss"] == pytest.approx(-math.log(0.1 / 4), rel=1e-5)
    assert result["token_accuracy"] == 0.0


def test_no_shift_scores_every_position(accelerator):
    probs = [0.1, 0.2, 0.3, 0.4]
    model = FixedDistributionLM(probs)
    rows = [[0, 3, 3, -100], [1, 2, 2, 2]]
    result = evaluate_lm(model, [_batch(rows)], accelerator, shift_labels=False)
    scored = [label for row in rows for label in row if label != -100]
    assert result["tokens"] == 7
    assert result["loss"] == pytest.approx(sum(-math.log(probs[t]) for t in scored) / 7, rel=1e-6)
    assert result["token_accuracy"] == pytest.approx(2 / 7)  # the two scored 3s


def test_max_batches(accelerator):
    model = FixedDistributionLM([0.5, 0.5])
    loader = [_batch([[0, 1, 0]]) for _ in range(5)]
    result = evaluate_lm(model, loader, accelerator, shift_labels=True, max_batches=2)
    assert result["tokens"] == 2 * 2
    assert len(model.calls) == 2


def test_token_accuracy_ignores_padding(accelerator):
    # argmax is token 1; row 0 scores 1, 1, (pad, pad); row 1 scores 0, 1, 1, 0
    model = FixedDistributionLM([0.2, 0.8])
    rows = [[0, 1, 1, -100, -100], [1, 0, 1, 1, 0]]
    result = evaluate_lm(model, [_batch(rows)], accelerator, shift_labels=True)
    assert result["tokens"] == 2 + 4
    assert result["token_accuracy"] == pytest.approx(4 / 6)


def test_restores_training_mode(accelerator):
    model = FixedDistributionLM([0.5, 0.5])
    model.train()
    evaluate_lm(model, [_batch([[0, 1]])], accelerator, shift_labels=True)
    assert model.training
    model.eval()
    evaluate_lm(model, [_batch([[0, 1]])], accelerator, shift_labels=True)
    assert not model.training


def test_empty_loader(accelerator):
    result = evaluate_lm(FixedDistributionLM([0.5, 0.5]), [], accelerator, shift_labels=True)
    assert result["tokens"] == 0
    assert result["token_accuracy"] == 0.0


class CopySourceSeq2Seq(nn.Module):
    """An 'encoder-decoder' that puts probability `hit` on label position t being input_ids[t] (the source)."""

    config = SimpleNamespace(is_encoder_decoder=True)

    def __init__(self, vocab: int, hit: float):
        super().__init__()
        self.vocab, self.hit = vocab, hit

    def forward(self, input_ids, attention_mask, labels):
        miss = (1 - self.hit) / (self.vocab - 1)
        probs = torch.full((*labels.shape, self.vocab), miss)
        probs.scatter_(2, input_ids[:, : labels.shape[1]].unsqueeze(-1), self.hit)
        return SimpleNamespace(logits=probs.log())


def test_source_gap_is_the_loss_with_each_source_swapped_for_its_neighbours():
    vocab, hit = 5, 0.8
    # Labels copy the source; with the sources rotated, row 0 gets row 2's source: 1 of its 3 tokens still
    # matches (token 2), row 1 gets row 0's (no match), row 2 gets row 1's (no match).
    sources = torch.tensor([[1, 2, 3], [4, 4, 4], [3, 2, 1]])
    batch = {"input_ids": sources, "attention_mask": torch.ones_like(sources), "labels": sources.clone()}
    results = evaluate_lm(CopySourceSeq2Seq(vocab, hit), [batch], Accelerator(cpu=True), shift_labels=False)
    hit_nll, miss_nll = -math.log(hit), -math.log((1 - hit) / (vocab - 1))
    assert results["loss"] == pytest.approx(hit_nll)
    swapped = (1 * hit_nll + 8 * miss_nll) / 9
    assert results["source_gap"] == pytest.approx(swapped - hit_nll)


def test_decoder_only_models_report_no_source_gap():
    batch = {"input_ids": torch.tensor([[1, 2, 3]]), "labels": torch.tensor([[1, 2, 3]])}
    results = evaluate_lm(FixedDistributionLM([0.25] * 4), [batch], Accelerator(cpu=True), shift_labels=True)
    assert "source_gap" not in results
