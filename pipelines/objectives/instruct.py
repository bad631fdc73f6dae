"""Instruction tuning for a causal LM: `prompt + response + EOS` in one sequence, the loss on the response only.

The prompt is the user's text wrapped by the tokenizer's chat template, which is saved with the export, so
`pipeline("text-generation")` given chat messages, and the CLI, build exactly the prompts seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.errors import PipelineError
from pipelines.objectives import OBJECTIVES, Objective
from pipelines.objectives.batching import pad_blocks, target_texts
from pipelines.objectives.clm import build_clm_collator

# Alpaca's layout. The user turn ends with the response header, so the generation prompt adds nothing.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}### Instruction:\n{{ message['content'] }}\n\n### Response:\n"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
)


def format_prompts(tokenizer, contents: list[str]) -> list[str]:
    """Each user text as the tokenizer's chat template (ours, if it has none yet) renders a one-message chat."""
    template = tokenizer.chat_template or CHAT_TEMPLATE
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": c}], chat_template=template, tokenize=False, add_generation_prompt=True
        )
        for c in contents
    ]


def encode_instruct(sources: list[str], targets: list[str], tokenizer, max_input_length: int,
                    max_target_length: int) -> dict[str, list]:  # fmt: skip
    """`input_ids` = prompt + response + EOS within `max_input_length` (= data.block_size); `labels` = -100 on
    the prompt. An overlong response is cut to `max_target_length`, then an overlong prompt loses its start
    (its end, the response header, is what the model answers)."""
    prompts = tokenizer(format_prompts(tokenizer, sources), add_special_tokens=False)["input_ids"]
    responses = [ids + [tokenizer.eos_token_id] for ids in tokenizer(targets, add_special_tokens=False)["input_ids"]]
    out = {"input_ids": [], "labels": [], "input_truncated": [], "target_truncated": []}
    for prompt, response in zip(prompts, responses, strict=True):
        kept = response[:max_target_length]
        room = max_input_length - len(kept)
        out["input_ids"].append(prompt[-room:] + kept)
        out["labels"].append([-100] * len(prompt[-room:]) + kept)
        out["input_truncated"].append(len(prompt) > room)
        out["target_truncated"].append(len(response) > max_target_length)
    return out


@dataclass(frozen=True)
class InstructCollator:
    """Right-pad `input_ids` (pad id) and `labels` (-100); the model shifts labels itself."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_blocks(examples, self.pad_token_id)
        labels = torch.nn.utils.rnn.pad_sequence(
            [torch.as_tensor(e["labels"]) for e in examples], batch_first=True, padding_value=-100
        )
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels} | target_texts(examples)


def build_instruct_collator(tokenizer, cfg=None, eval_seed: int | None = None) -> InstructCollator:
    """Pads with the tokenizer's pad token (EOS if it has none: padding is masked anyway)."""
    if tokenizer.eos_token_id is None:
        raise PipelineError("instruction tuning needs a tokenizer with an EOS token to end responses")
    return InstructCollator(pad_token_id=build_clm_collator(tokenizer).pad_token_id)


OBJECTIVES.register(
    "instruct",
    Objective(
        kind="text_to_text",
        families=("causal",),
        auto_class="AutoModelForCausalLM",
        build_collator=build_instruct_collator,
        shift_labels=True,
        encode_pairs=encode_instruct,
        default_metrics=("rouge", "exact_match"),
    ),
)
