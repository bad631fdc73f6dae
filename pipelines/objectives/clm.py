"""Causal language modelling: predict every next token; padding is masked out of the loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.objectives import OBJECTIVES, Objective


@dataclass(frozen=True)
class CausalLMCollator:
    """Stack packed blocks; pad the odd short block and give its padding label -100.

    Labels equal the inputs: `transformers` causal models shift them internally.
    """

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [len(e["input_ids"]) for e in examples]
        longest = max(lengths)
        input_ids = torch.full((len(examples), longest), self.pad_token_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros_like(input_ids)
        for row, (example, length) in enumerate(zip(examples, lengths, strict=True)):
            input_ids[row, :length] = torch.as_tensor(example["input_ids"])
            attention_mask[row, :length] = 1
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def build_clm_collator(tokenizer) -> CausalLMCollator:
    """A CLM collator that pads with the tokenizer's pad token (EOS if it has none)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return CausalLMCollator(pad_token_id=pad)


OBJECTIVES.register("clm", Objective(families=("causal",), build_collator=build_clm_collator, shift_labels=True))
