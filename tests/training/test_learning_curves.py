"""Learning-curve regression tests: every architecture, built and optimised exactly as a run builds it
(registry builder + `build_optimizer` with the config's defaults), trains on a tiny synthetic task with a
fixed seed, and its held-out loss after N steps must stay below a bound recorded when the recipe was
known to be good. A silent learning regression (a bad init, a wrong optimizer group, a broken mask)
fails here in seconds instead of showing up later in a benchmark table.

Bounds are the measured losses (2026-11-26, torch 2.13 CPU) plus a margin of about 10% of the distance
from the starting loss; `test_t5_query_scale_*` checks the bound would have caught issue 10's defect.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)

from pipelines.config import ModelConfig, OptimConfig
from pipelines.models import ModelShape, build_model
from pipelines.training.optimizer import build_optimizer

PAD, EOS, MASK = 0, 1, 2
V, T, B = 64, 16, 32  # vocabulary, sequence length, batch
SHAPE = ModelShape(vocab_size=V, max_positions=64, bos_token_id=None, eos_token_id=EOS, pad_token_id=PAD)
PREFIX = torch.tensor([3, 4, 5, 6])  # a constant task prefix, like "translate English to German:"


def causal_batch(g: torch.Generator) -> dict:
    """Arithmetic sequences mod V with a random start and step: the rest follows from the first two tokens."""
    start, step = torch.randint(8, V, (B, 1), generator=g), torch.randint(1, 5, (B, 1), generator=g)
    ids = 8 + (start + step * torch.arange(T)) % (V - 8)
    return {"input_ids": ids, "labels": ids}


def masked_batch(g: torch.Generator) -> dict:
    """A random 4-token pattern repeated, with 15% of positions masked and scored: each masked token can be
    copied from 4 positions away."""
    ids = torch.randint(8, V, (B, 4), generator=g).repeat(1, T // 4)
    masked = torch.rand(ids.shape, generator=g) < 0.15
    return {"input_ids": ids.masked_fill(masked, MASK), "labels": ids.masked_fill(~masked, -100)}


def classification_batch(g: torch.Generator) -> dict:
    """Random tokens; label 1 when token 7 occurs anywhere (planted in half the rows)."""
    ids = torch.randint(8, V, (B, T), generator=g)
    labels = torch.randint(0, 2, (B,), generator=g)
    ids[labels == 1, torch.randint(0, T, (int(labels.sum()),), generator=g)] = 7
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def seq2seq_batch(g: torch.Generator) -> dict:
    """Prefix + random tokens → the tokens reversed: the target cannot be guessed without reading the source."""
    source = torch.randint(8, V, (B, T), generator=g)
    eos = torch.full((B, 1), EOS)
    ids = torch.cat([PREFIX.expand(B, -1), source, eos], dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.cat([source.flip(1), eos], 1)}


@dataclasses.dataclass(frozen=True)
class Curve:
    arch: str
    auto_class: type
    batch: object
    steps: int
    learning_rate: float
    bound: float
    model: dict = dataclasses.field(default_factory=dict)


CURVES = [
    Curve("gpt2", AutoModelForCausalLM, causal_batch, 60, 1e-2, bound=1.5),  # measured 1.14
    Curve("llama", AutoModelForCausalLM, causal_batch, 60, 1e-2, bound=0.8),  # 0.50
    Curve("bert", AutoModelForMaskedLM, masked_batch, 150, 3e-3, bound=1.5),  # 0.36
    Curve("t5", AutoModelForSeq2SeqLM, seq2seq_batch, 150, 5e-3, bound=3.35),  # 3.16
    Curve("textcnn", AutoModelForSequenceClassification, classification_batch, 15, 1e-2, bound=0.2),  # 0.05
    Curve("bilstm", AutoModelForSequenceClassification, classification_batch, 20, 1e-2, bound=0.1),  # 0.00
    Curve("lstm_lm", AutoModelForCausalLM, causal_batch, 40, 1e-2, bound=2.0),  # 1.67
    Curve("lstm_seq2seq", AutoModelForSeq2SeqLM, seq2seq_batch, 100, 5e-3, bound=3.0),  # 2.66
]


def train_curve(curve: Curve, optim: OptimConfig | None = None) -> tuple[float, torch.nn.Module, dict]:
    """Held-out loss after `curve.steps` steps, the model and the held-out batch."""
    torch.manual_seed(0)
    fields = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "num_filters": 32} | curve.model
    updates = {"num_labels": 2} if curve.auto_class is AutoModelForSequenceClassification else {}
    model = build_model(ModelConfig(arch=curve.arch, **fields), SHAPE, curve.auto_class, **updates)
    optimizer = build_optimizer(model, optim or OptimConfig(learning_rate=curve.learning_rate))
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(curve.steps):
        model(**curve.batch(g)).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    held_out = curve.batch(torch.Generator().manual_seed(1234))
    model.eval()
    with torch.no_grad():
        return model(**held_out).loss.item(), model, held_out


@functools.cache
def trained(arch: str) -> tuple[float, torch.nn.Module, dict]:
    """`train_curve` with the defaults, once per architecture per session."""
    return train_curve(next(c for c in CURVES if c.arch == arch))


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.arch)
def test_loss_after_n_steps_stays_below_its_recorded_bound(curve):
    loss, _, _ = trained(curve.arch)
    assert loss < curve.bound, f"{curve.arch}: held-out loss {loss:.3f} after {curve.steps} steps (bound {curve.bound})"


def source_gap(model, batch: dict) -> float:
    """Loss with each example's source swapped for its neighbour's, minus the loss (0: the source is ignored)."""
    swapped = {
        **batch,
        "input_ids": batch["input_ids"].roll(1, 0),
        "attention_mask": batch["attention_mask"].roll(1, 0),
    }
    with torch.no_grad():
        return model(**swapped).loss.item() - model(**batch).loss.item()


@pytest.mark.parametrize("arch", ["t5", "lstm_seq2seq"])
def test_encoder_decoders_read_their_source(arch):
    _, model, held_out = trained(arch)
    assert source_gap(model, held_out) > 1.0  # measured: t5 1.25, lstm_seq2seq 2.74


def test_t5_query_scale_is_what_the_bound_guards():
    """Issue 10's defect, re-created: every T5 tensor at the one learning rate, as before the fix. The T5
    curve's bound must fail it, or the learning-curve test would not have caught the defect."""
    curve = next(c for c in CURVES if c.arch == "t5")
    before = OptimConfig(learning_rate=curve.learning_rate, query_lr_scale=1.0, embedding_lr_scale=1.0)
    loss, model, held_out = train_curve(curve, before)
    assert loss > curve.bound and source_gap(model, held_out) < 0.8  # measured 3.59 and 0.42
