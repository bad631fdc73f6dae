"""Causal language modelling: predict every next token; padding is masked out of the loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.errors import PipelineError
from pipelines.objectives import OBJECTIVES, Objective, Packing
from pipelines.objectives.batching import pad_blocks


@dataclass(frozen=True)
class CausalLMCollator:
    """Stack packed blocks; pad the odd short block on the right and give its padding label -100.

    Labels equal the inputs: `transformers` causal models shift them internally. No attention mask: a real token
    never attends to the padding after it, so the mask changes no loss, while passing one costs every attention
    layer a padding mask combined with the causal one (compiled, 13% of the benchmark's forward pass;
    docs/benchmarks.md, "Seventeenth sweep")."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_blocks(examples, self.pad_token_id)
        return {"input_ids": input_ids, "labels": input_ids.masked_fill(attention_mask == 0, -100)}


def build_clm_collator(tokenizer, cfg=None, eval_seed: int | None = None) -> CausalLMCollator:
    """A CLM collator that pads with the tokenizer's pad token (EOS if it has none)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return CausalLMCollator(pad_token_id=pad)


def clm_packing(tokenizer, cfg=None) -> Packing:
    """EOS after every document; blocks are plain slices of the stream."""
    if tokenizer.eos_token_id is None:
        raise PipelineError("the tokenizer has no EOS token, which causal LM packing needs between documents")
    return Packing(separator_id=tokenizer.eos_token_id)


OBJECTIVES.register(
    "clm",
    Objective(
        kind="packed",
        families=("causal",),
        auto_class="AutoModelForCausalLM",
        build_collator=build_clm_collator,
        shift_labels=True,
        scores_all_tokens=True,
        packing=clm_packing,
    ),
)
