"""Training, saving and loading the byte-level BPE tokenizer."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from pipelines.config import TokenizerConfig
from pipelines.errors import PipelineError
from pipelines.objectives.clm import clm_packing
from pipelines.tokenization import load_tokenizer, train_tokenizer

SUBJECTS = ["The cat", "A dog", "My friend", "The teacher", "Our neighbour"]
VERBS = ["reads a book", "walks to the park", "writes a letter", "cooks dinner", "plays the piano"]
TIMES = ["in the morning.", "every evening.", "on Sundays.", "after work.", "when it rains.", "at night."]
SENTENCES = [f"{s} {v} {t}" for s in SUBJECTS for v in VERBS for t in TIMES][:50]

ROUND_TRIP = [
    "The cat reads a book in the morning.",
    "  two leading spaces and trailing space ",
    "line one\nline two\n\n\tindented after a blank line\r\n",
    "unicode: café, naïve, Ærøskøbing, 東京, Ελληνικά, ½ ≠ ∞",
    "emoji 🎉🐍 and a family 👨‍👩‍👧 and a flag 🇺🇦",
    "punctuation , spacing . matters ! ? ' \" ;",
    "zqxj vvv wwwww — words never seen in training",
    "",
    " ",
    "\n",
]


@pytest.fixture(scope="module")
def corpus() -> Dataset:
    return Dataset.from_dict({"text": SENTENCES})


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer(TokenizerConfig(vocab_size=300, min_frequency=2), corpus, "text")


@pytest.fixture(scope="module")
def saved_dir(tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    tokenizer.save_pretrained(str(path))
    return path


def test_corpus_size():
    assert len(SENTENCES) == 50
    assert len(set(SENTENCES)) == 50


def test_vocab_size_bounded(tokenizer):
    assert 256 < len(tokenizer) <= 300  # the byte alphabet plus some merges, never above the target


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.eos_token_id is not None
    assert tokenizer.bos_token_id is not None
    assert tokenizer.pad_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_merges_learned_from_corpus(tokenizer):
    # a frequent training word takes fewer tokens than its byte count
    assert len(tokenizer("the", add_special_tokens=False)["input_ids"]) < 3


def test_save_and_auto_load(tokenizer, saved_dir):
    assert (saved_dir / "tokenizer.json").is_file()
    loaded = AutoTokenizer.from_pretrained(str(saved_dir))
    assert len(loaded) == len(tokenizer)
    assert loaded.eos_token_id == tokenizer.eos_token_id
    assert loaded.pad_token_id == tokenizer.pad_token_id
    assert loaded.bos_token_id == tokenizer.bos_token_id
    for text in SENTENCES[:5] + ROUND_TRIP:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_exact(saved_dir, text):
    tok = AutoTokenizer.from_pretrained(str(saved_dir))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_round_trip_trained_object(tokenizer):
    for text in ROUND_TRIP:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_no_unknown_tokens(tokenizer):
    ids = tokenizer("🇺🇦 東京 \x00 \x7f", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
    assert all(0 <= i < len(tokenizer) for i in ids)


def test_load_tokenizer(saved_dir, tokenizer):
    loaded = load_tokenizer(saved_dir)
    assert loaded.eos_token_id == tokenizer.eos_token_id
    assert loaded("hello world")["input_ids"] == tokenizer("hello world")["input_ids"]


def test_load_tokenizer_missing_dir(tmp_path):
    with pytest.raises(PipelineError, match=r"no tokenizer at .*train-tokenizer"):
        load_tokenizer(tmp_path / "nowhere")


def test_load_tokenizer_without_eos(tokenizer, tmp_path):
    # loading no longer requires EOS (masked LMs have none); causal LM packing refuses it instead
    tokenizer.save_pretrained(str(tmp_path))
    config_path = tmp_path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("eos_token", None)
    config_path.write_text(json.dumps(config))
    loaded = load_tokenizer(tmp_path)
    assert loaded.eos_token_id is None
    assert loaded("hello world")["input_ids"] == tokenizer("hello world")["input_ids"]
    with pytest.raises(PipelineError, match="no EOS token"):
        clm_packing(loaded)
    assert clm_packing(tokenizer).separator_id == tokenizer.eos_token_id


def test_max_training_documents(corpus):
    # with only the first document, words from later documents are never merged
    only_first = train_tokenizer(
        TokenizerConfig(vocab_size=300, min_frequency=1, max_training_documents=1), corpus, "text"
    )
    everything = train_tokenizer(TokenizerConfig(vocab_size=300, min_frequency=1), corpus, "text")
    word = " piano"
    assert "piano" not in SENTENCES[0]
    assert len(only_first(word, add_special_tokens=False)["input_ids"]) > len(
        everything(word, add_special_tokens=False)["input_ids"]
    )


def test_unknown_kind(corpus):
    known = "byte_bpe, unigram, wordpiece"
    with pytest.raises(PipelineError, match=rf"unknown tokenizer kind 'sentencepiece'; known: {known}"):
        train_tokenizer(TokenizerConfig(kind="sentencepiece"), corpus, "text")  # type: ignore[arg-type]
