"""Token-weighted LM loss over a validation loader, exact across processes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate_lm(model, loader, accelerator, shift_labels: bool, max_batches: int | None = None) -> dict[str, float]:
    """Mean NLL per predicted token (nats), perplexity, token accuracy (argmax = target), tokens scored, and for an
    encoder-decoder the source gap: the loss again with each batch's encoder inputs rotated by one example,
    minus the loss (≈ 0 for a model that ignores its input).

    Per-example sums are gathered with `gather_for_metrics`, which drops the samples accelerate
    duplicates to even out the last batch, so the figure does not depend on the process count.
    """
    was_training = model.training
    model.eval()
    encoder_decoder = getattr(getattr(accelerator.unwrap_model(model), "config", None), "is_encoder_decoder", False)
    total_nll = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    total_tokens = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    total_correct = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    total_swapped = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v for k, v in batch.items() if k != "target_text"}  # text, for generation metrics only
        labels = batch.pop("labels")
        # An encoder-decoder builds its decoder inputs from the labels; other models need not compute a loss.
        logits = model(**batch, **({"labels": labels} if encoder_decoder else {})).logits  # (B, T, V)
        if shift_labels:
            logits, labels = logits[:, :-1], labels[:, 1:]
        nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")  # (B, T)
        scored = labels != -100
        correct = (logits.argmax(dim=-1) == labels) & scored
        swapped = _swapped_source_nll(model, batch, labels) if encoder_decoder else torch.zeros_like(nll)
        per_example = torch.stack([nll.sum(dim=1), scored.sum(dim=1), correct.sum(dim=1), swapped.sum(dim=1)], dim=1)
        gathered = accelerator.gather_for_metrics(per_example.double()).sum(dim=0)  # (4,)
        total_nll += gathered[0]
        total_tokens += gathered[1]
        total_correct += gathered[2]
        total_swapped += gathered[3]
    model.train(was_training)
    tokens = total_tokens.clamp(min=1)
    loss = (total_nll / tokens).item()
    results = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "token_accuracy": (total_correct / tokens).item(),
        "tokens": int(total_tokens.item()),
    }
    if encoder_decoder:
        results["source_gap"] = ((total_swapped - total_nll) / tokens).item()
    return results


def _swapped_source_nll(model, batch: dict, labels: torch.Tensor) -> torch.Tensor:
    """(B, T) target NLL when every example gets the encoder input of the example before it in the batch."""
    swapped = {k: torch.roll(v, 1, dims=0) if k in ("input_ids", "attention_mask") else v for k, v in batch.items()}
    logits = model(**swapped, labels=labels).logits
    return F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """Convert mean NLL per token (nats) into bits per UTF-8 byte, comparable across tokenizers."""
    return loss / math.log(2) / bytes_per_token
