"""Masked language modelling (BERT): predict a random 15% of tokens, or of whole words.

Written here rather than taken from `DataCollatorForLanguageModeling` because whole-word masking
there needs per-document offset mappings, which packed blocks do not have; WordPiece's `##`
continuation pieces give word boundaries directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.config import ObjectiveConfig
from pipelines.errors import PipelineError
from pipelines.objectives import OBJECTIVES, Objective, Packing
from pipelines.objectives.batching import pad_blocks


@dataclass(frozen=True, eq=False)
class MaskedLMCollator:
    """Select `probability` of the maskable tokens; of those, 80% → [MASK], 10% → random token, 10% kept.

    Labels hold the original id at selected positions and -100 elsewhere; special tokens and padding
    are never selected. With `continuation` (a per-vocabulary bool: "is a `##` piece"), selection is
    per word: all pieces of a chosen word are selected together.
    """

    mask_token_id: int
    pad_token_id: int
    vocab_size: int
    special_ids: torch.Tensor
    probability: float = 0.15
    continuation: torch.Tensor | None = None
    eval_seed: int | None = None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_blocks(examples, self.pad_token_id)  # (B, T)
        generator = None
        if self.eval_seed is not None:  # the same batch always gets the same masks
            generator = torch.Generator().manual_seed(self.eval_seed + int(input_ids.sum()) % 1_000_003)
        maskable = ~torch.isin(input_ids, self.special_ids) & attention_mask.bool()
        selected = self._select(input_ids, maskable, generator)

        labels = input_ids.masked_fill(~selected, -100)
        draw = torch.rand(input_ids.shape, generator=generator)
        to_mask = selected & (draw < 0.8)
        to_random = selected & (draw >= 0.8) & (draw < 0.9)
        random_ids = torch.randint(self.vocab_size, input_ids.shape, generator=generator)
        inputs = input_ids.masked_fill(to_mask, self.mask_token_id).where(~to_random, random_ids)
        return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}

    def _select(self, input_ids: torch.Tensor, maskable: torch.Tensor, generator) -> torch.Tensor:
        chance = torch.rand(input_ids.shape, generator=generator)
        if self.continuation is None:
            return maskable & (chance < self.probability)
        starts = maskable & ~self.continuation[input_ids]  # first piece of each word
        word_ids = starts.long().cumsum(dim=1)  # (B, T): pieces share their word's id; 0 = before any start
        chosen = torch.zeros(input_ids.shape[0], input_ids.shape[1] + 1, dtype=torch.bool)
        # Only a word's first piece writes its word's draw; every other position writes to the unused column 0.
        chosen.scatter_(1, word_ids.masked_fill(~starts, 0), starts & (chance < self.probability))
        chosen[:, 0] = False  # continuation pieces cut off from their word's start at the block edge
        return chosen.gather(1, word_ids) & maskable


def build_mlm_collator(tokenizer, cfg: ObjectiveConfig, eval_seed: int | None = None) -> MaskedLMCollator:
    """An MLM collator for a tokenizer with a mask token."""
    if tokenizer.mask_token_id is None:
        raise PipelineError("the tokenizer has no mask token; masked LM needs one (train a `wordpiece` tokenizer)")
    continuation = None
    if cfg.whole_word_mask:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        continuation = torch.tensor([p.startswith("##") for p in pieces])
    return MaskedLMCollator(
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vocab_size=len(tokenizer),
        special_ids=torch.tensor(tokenizer.all_special_ids),
        probability=cfg.mlm_probability,
        continuation=continuation,
        eval_seed=eval_seed,
    )


def mlm_packing(tokenizer, cfg=None) -> Packing:
    """[SEP] after every document; each block is `[CLS] … [SEP]`, as BERT saw its inputs."""
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise PipelineError("masked LM packing needs [CLS] and [SEP] tokens (train a `wordpiece` tokenizer)")
    return Packing(
        separator_id=tokenizer.sep_token_id, prefix=(tokenizer.cls_token_id,), suffix=(tokenizer.sep_token_id,)
    )


OBJECTIVES.register(
    "mlm",
    Objective(
        kind="packed",
        families=("masked",),
        auto_class="AutoModelForMaskedLM",
        build_collator=build_mlm_collator,
        packing=mlm_packing,
    ),
)
