"""`model.embeddings_from`: a baseline starts from a pretrained transformer's token embeddings."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForMaskedLM

from pipelines.config import load_config
from pipelines.errors import PipelineError
from pipelines.models import init_model
from pipelines.tokenization import load_tokenizer
from tests.conftest import REPO


@pytest.fixture
def bert_export(tmp_path):
    tokenizer = load_tokenizer(REPO / "tokenizers" / "bert-builtin")
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=64))  # fmt: skip
    model.save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    return tmp_path / "bert", model.get_input_embeddings().weight


def test_textcnn_starts_from_bert_embeddings(bert_export):
    path, weights = bert_export
    cfg = load_config(None, ["model.arch=textcnn", "model.embedding_size=32", f"model.embeddings_from={path}"])
    tokenizer = load_tokenizer(REPO / "tokenizers" / "bert-builtin")
    model = init_model(cfg.model, None, AutoModelForSequenceClassification, tokenizer, 32, num_labels=2)
    copied = model.get_input_embeddings().weight[: len(tokenizer)]
    torch.testing.assert_close(copied, weights[: len(tokenizer)])


def test_embeddings_from_refuses_another_tokenizer_or_width(bert_export):
    path, _ = bert_export
    cfg = load_config(None, ["model.arch=textcnn", "model.embedding_size=32", f"model.embeddings_from={path}"])
    gpt_tokenizer = load_tokenizer(REPO / "tokenizers" / "gpt-builtin")
    with pytest.raises(PipelineError, match="another tokenizer"):
        init_model(cfg.model, None, AutoModelForSequenceClassification, gpt_tokenizer, 32, num_labels=2)
    cfg = load_config(None, ["model.arch=textcnn", "model.embedding_size=48", f"model.embeddings_from={path}"])
    bert_tokenizer = load_tokenizer(REPO / "tokenizers" / "bert-builtin")
    with pytest.raises(PipelineError, match="x 48"):
        init_model(cfg.model, None, AutoModelForSequenceClassification, bert_tokenizer, 32, num_labels=2)
