"""Batch helpers shared by several objectives' collators."""

from __future__ import annotations

import torch


def pad_blocks(examples: list[dict], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad `input_ids` lists into (B, T) ids and attention mask."""
    lengths = [len(e["input_ids"]) for e in examples]
    input_ids = torch.full((len(examples), max(lengths)), pad_token_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros_like(input_ids)
    for row, (example, length) in enumerate(zip(examples, lengths, strict=True)):
        input_ids[row, :length] = torch.as_tensor(example["input_ids"])
        attention_mask[row, :length] = 1
    return input_ids, attention_mask


def target_texts(examples: list[dict]) -> dict[str, list[str]]:
    """Validation examples carry their target's text, for scoring generated outputs; the model never sees it."""
    return {"target_text": [e["target_text"] for e in examples]} if "target_text" in examples[0] else {}
