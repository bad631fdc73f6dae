"""Instruction tuning: prompt + response + EOS in one sequence, labels on the response only, and truncation."""

from __future__ import annotations

import pytest
import torch
import transformers

from pipelines.objectives import OBJECTIVES
from pipelines.objectives.instruct import (
    CHAT_TEMPLATE,
    InstructCollator,
    build_instruct_collator,
    encode_instruct,
    format_prompts,
)
from pipelines.tokenization import load_tokenizer

SOURCES = ["Name a colour.", "Add the numbers.\n2 and 3", "Say hello to the reader of this test."]
TARGETS = ["Blue.", "Five, since 2 + 3 = 5.", "Hello, reader!"]


@pytest.fixture(scope="module")
def tokenizer():
    tok = load_tokenizer("tokenizers/gpt-builtin")
    assert tok.eos_token_id is not None
    return tok


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _prompt(content: str) -> str:
    return f"### Instruction:\n{content}\n\n### Response:\n"


def test_instruct_registered():
    objective = OBJECTIVES.get("instruct")
    assert objective.families == ("causal",)
    assert objective.shift_labels is True
    assert objective.encode_pairs is encode_instruct


def test_format_prompts_uses_the_alpaca_template(tokenizer):
    assert tokenizer.chat_template is None  # so ours is used
    assert format_prompts(tokenizer, SOURCES) == [_prompt(s) for s in SOURCES]
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
        chat_template=CHAT_TEMPLATE,
        tokenize=False,
    )
    assert rendered == _prompt("x") + "y" + tokenizer.eos_token + "\n\n"


def test_labels_mask_exactly_the_prompt(tokenizer):
    eos = tokenizer.eos_token_id
    out = encode_instruct(SOURCES, TARGETS, tokenizer, max_input_length=128, max_target_length=32)
    assert out["input_truncated"] == [False] * 3 and out["target_truncated"] == [False] * 3
    for source, target, ids, labels in zip(SOURCES, TARGETS, out["input_ids"], out["labels"], strict=True):
        prompt, response = _ids(tokenizer, _prompt(source)), [*_ids(tokenizer, target), eos]
        assert ids == prompt + response
        assert len(labels) == len(ids)
        assert labels[: len(prompt)] == [-100] * len(prompt)
        assert labels[len(prompt) :] == ids[len(prompt) :] == response
        assert -100 not in labels[len(prompt) :]
        assert tokenizer.decode(ids[: len(prompt)]) == _prompt(source)
        assert tokenizer.decode(ids[len(prompt) : -1]) == target
        assert ids[-1] == eos


def test_overlong_response_is_cut_and_flagged(tokenizer):
    eos = tokenizer.eos_token_id
    target = " ".join(["a rather long answer"] * 10)
    response = [*_ids(tokenizer, target), eos]
    assert len(response) > 8
    out = encode_instruct(["Q?"], [target], tokenizer, max_input_length=64, max_target_length=8)
    prompt = _ids(tokenizer, _prompt("Q?"))
    assert out["target_truncated"] == [True] and out["input_truncated"] == [False]
    assert out["input_ids"][0] == prompt + response[:8]
    assert out["labels"][0] == [-100] * len(prompt) + response[:8]


def test_overlong_prompt_loses_its_start(tokenizer):
    eos = tokenizer.eos_token_id
    source = " ".join(f"word{i}" for i in range(60))
    prompt, response = _ids(tokenizer, _prompt(source)), [*_ids(tokenizer, "Fine."), eos]
    limit = 32
    assert len(prompt) + len(response) > limit
    out = encode_instruct([source, "Hi."], ["Fine.", "Fine."], tokenizer, max_input_length=limit, max_target_length=8)
    assert out["input_truncated"] == [True, False] and out["target_truncated"] == [False, False]
    room = limit - len(response)
    assert out["input_ids"][0] == prompt[-room:] + response
    assert out["labels"][0] == [-100] * room + response
    assert tokenizer.decode(out["input_ids"][0][:room]).endswith("word59\n\n### Response:\n")
    assert all(len(ids) <= limit for ids in out["input_ids"])


@pytest.mark.parametrize("limit", [16, 24, 40])
def test_total_never_exceeds_max_input_length(tokenizer, limit):
    sources = [" ".join(["long prompt"] * n) for n in (1, 5, 30)]
    targets = [" ".join(["long response"] * n) for n in (1, 5, 30)]
    out = encode_instruct(sources, targets, tokenizer, max_input_length=limit, max_target_length=limit // 2)
    assert all(len(ids) <= limit for ids in out["input_ids"])
    assert all(len(labels) == len(ids) for labels, ids in zip(out["labels"], out["input_ids"], strict=True))
    assert all(sum(label != -100 for label in labels) <= limit // 2 for labels in out["labels"])


@pytest.mark.parametrize("target_length", [32, 40])
def test_target_length_must_be_shorter_than_block(target_length):
    from pipelines.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="max_target_length"):  # refused when the config loads
        load_config(
            None, ["objective.name=instruct", "data.block_size=32", f"objective.max_target_length={target_length}"]
        )


def test_collator_pads_labels_and_masks_padding(tokenizer):
    out = encode_instruct(SOURCES, TARGETS, tokenizer, max_input_length=128, max_target_length=32)
    examples = [{"input_ids": i, "labels": la} for i, la in zip(out["input_ids"], out["labels"], strict=True)]
    collator = build_instruct_collator(tokenizer)
    assert isinstance(collator, InstructCollator) and collator.pad_token_id == tokenizer.pad_token_id
    batch = collator(examples)
    width = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, width)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == example["input_ids"]
        assert batch["labels"][row].tolist() == example["labels"] + [-100] * (width - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert bool((batch["input_ids"][row, n:] == tokenizer.pad_token_id).all())


def test_loss_is_over_response_tokens_only(tokenizer):
    out = encode_instruct(SOURCES, TARGETS, tokenizer, max_input_length=128, max_target_length=32)
    examples = [{"input_ids": i, "labels": la} for i, la in zip(out["input_ids"], out["labels"], strict=True)]
    batch = build_instruct_collator(tokenizer)(examples)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2, n_positions=128)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        output = model(**batch)
    logits, labels = output.logits[:, :-1], batch["labels"][:, 1:]
    scored = labels != -100
    by_hand = torch.nn.functional.cross_entropy(logits[scored], labels[scored])
    assert int(scored.sum()) == sum(len(_ids(tokenizer, t)) + 1 for t in TARGETS)
    torch.testing.assert_close(output.loss, by_hand)
    # Discriminative: scoring every real token (prompt included) gives another loss.
    real = batch["attention_mask"][:, 1:].bool()
    everything = torch.nn.functional.cross_entropy(logits[real], batch["input_ids"][:, 1:][real])
    assert abs(float(everything) - float(output.loss)) > 1e-4
