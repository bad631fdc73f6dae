"""The causal-LM collator: stacking packed blocks, padding the short one, masking padding out of the loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import transformers

from pipelines.config import ModelConfig, ObjectiveConfig
from pipelines.errors import PipelineError
from pipelines.models import ModelShape, build_model
from pipelines.objectives import OBJECTIVES, Packing, auto_class_for
from pipelines.objectives.clm import CausalLMCollator, build_clm_collator, clm_packing

PAD = 99


def test_equal_length_examples_stack():
    collate = CausalLMCollator(pad_token_id=PAD)
    batch = collate([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6]}])
    assert set(batch) == {"input_ids", "labels"}
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert batch["labels"].tolist() == [[1, 2, 3], [4, 5, 6]]
    for tensor in batch.values():
        assert tensor.dtype == torch.long
        assert tensor.shape == (2, 3)


def test_short_example_is_padded_and_masked_out_of_the_loss():
    collate = CausalLMCollator(pad_token_id=PAD)
    batch = collate([{"input_ids": [1, 2, 3, 4]}, {"input_ids": [5, 6]}, {"input_ids": [7, 8, 9, 10]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [5, 6, PAD, PAD], [7, 8, 9, 10]]
    assert batch["labels"].tolist() == [[1, 2, 3, 4], [5, 6, -100, -100], [7, 8, 9, 10]]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen3"])
def test_no_attention_mask_changes_no_loss(arch):
    # right padding comes after every real token, which causal attention never looks ahead to: the collator's
    # batch without a mask gives each real token the loss and logits it gets with the padding masked
    shape = ModelShape(vocab_size=128, max_positions=8, bos_token_id=None, eos_token_id=1, pad_token_id=PAD % 128)
    model = build_model(ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=4), shape,
                        transformers.AutoModelForCausalLM).eval()  # fmt: skip
    batch = CausalLMCollator(pad_token_id=PAD % 128)([{"input_ids": [5, 6, 7, 8, 9, 10]}, {"input_ids": [11, 12, 13]}])
    mask = (batch["labels"] != -100).long()
    with torch.no_grad():
        unmasked, masked = model(**batch), model(**batch, attention_mask=mask)
    assert torch.allclose(unmasked.loss, masked.loss, atol=1e-6)
    assert torch.allclose(unmasked.logits[mask == 1], masked.logits[mask == 1], atol=1e-5)


def test_real_token_equal_to_pad_id_is_kept():
    # a real token whose id happens to equal the pad id must still be a label (masking uses lengths)
    collate = CausalLMCollator(pad_token_id=PAD)
    batch = collate([{"input_ids": [PAD, 1, PAD]}, {"input_ids": [2]}])
    assert batch["labels"].tolist() == [[PAD, 1, PAD], [2, -100, -100]]


def test_accepts_tensors_and_extra_keys():
    collate = CausalLMCollator(pad_token_id=0)
    batch = collate([{"input_ids": torch.tensor([3, 4]), "extra": "x"}, {"input_ids": torch.tensor([5])}])
    assert batch["input_ids"].tolist() == [[3, 4], [5, 0]]
    assert set(batch) == {"input_ids", "labels"}


def test_does_not_mutate_examples():
    examples = [{"input_ids": [1, 2]}, {"input_ids": [3]}]
    CausalLMCollator(pad_token_id=PAD)(examples)
    assert examples == [{"input_ids": [1, 2]}, {"input_ids": [3]}]


@pytest.mark.parametrize(("pad", "eos", "expected"), [(7, 3, 7), (None, 3, 3), (0, 3, 0)])
def test_build_collator_pad_choice(pad, eos, expected):
    collator = build_clm_collator(SimpleNamespace(pad_token_id=pad, eos_token_id=eos), ObjectiveConfig())
    assert collator.pad_token_id == expected


def test_eval_seed_changes_nothing():
    # causal LM has no randomness: the evaluation collator equals the training one
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    examples = [{"input_ids": [3, 4, 5]}, {"input_ids": [6]}]
    train = build_clm_collator(tok, ObjectiveConfig())(examples)
    evaluation = build_clm_collator(tok, ObjectiveConfig(), eval_seed=7)(examples)
    assert all(torch.equal(train[k], evaluation[k]) for k in train)


def test_clm_packing_separates_documents_with_eos():
    assert clm_packing(SimpleNamespace(eos_token_id=3)) == Packing(separator_id=3, prefix=(), suffix=())
    with pytest.raises(PipelineError, match="no EOS token"):
        clm_packing(SimpleNamespace(eos_token_id=None))


def test_clm_registered_with_shift():
    objective = OBJECTIVES.get("clm")
    assert objective.shift_labels is True
    assert objective.families == ("causal",)
    assert objective.scores_all_tokens is True
    assert objective.packing is clm_packing
    assert auto_class_for(objective) is transformers.AutoModelForCausalLM
    collator = objective.build_collator(SimpleNamespace(pad_token_id=5, eos_token_id=1), ObjectiveConfig())
    assert collator([{"input_ids": [1]}, {"input_ids": [2, 3]}])["input_ids"].tolist() == [[1, 5], [2, 3]]
