"""The built-in standard-library documentation corpus and its train/validation carve-out."""

from __future__ import annotations

import pytest

from pipelines.config import DataConfig
from pipelines.data.builtin import iter_builtin_documents
from pipelines.data.sources import load_raw_datasets


@pytest.fixture(scope="module")
def documents() -> list[dict[str, str]]:
    return list(iter_builtin_documents())


@pytest.fixture(scope="module")
def raw_splits():
    return load_raw_datasets(DataConfig(), seed=42)


def test_corpus_is_large(documents):
    assert len(documents) > 300
    assert sum(len(d["text"]) for d in documents) > 1_000_000


def test_corpus_is_deterministic(documents):
    assert list(iter_builtin_documents()) == documents


def test_every_document_has_text_and_source(documents):
    for doc in documents:
        assert set(doc) == {"text", "source"}
        assert doc["text"].strip(), doc["source"]
        assert doc["source"]


def test_sources_are_unique(documents):
    sources = [d["source"] for d in documents]
    assert len(set(sources)) == len(sources)


def test_corpus_has_modules_and_topics(documents):
    sources = {d["source"] for d in documents}
    assert any(s.startswith("pydoc_data/topics.py:") for s in sources)
    assert "json/__init__.py" in sources
    json_doc = next(d for d in documents if d["source"] == "json/__init__.py")
    assert json_doc["text"].startswith("json\n\n")
    assert "json.dumps\n" in json_doc["text"]


def test_corpus_skips_tests_and_private(documents):
    for doc in documents:
        parts = doc["source"].split("/")
        assert "test" not in parts[:-1] and "tests" not in parts[:-1], doc["source"]


def test_load_raw_builtin_has_both_splits(raw_splits, documents):
    assert set(raw_splits) == {"train", "validation"}
    train, validation = raw_splits["train"], raw_splits["validation"]
    assert len(train) > 0 and len(validation) > 0
    assert len(train) + len(validation) == len(documents)
    # the default validation_fraction is 0.05
    assert len(validation) == pytest.approx(0.05 * len(documents), abs=2)


def test_load_raw_builtin_splits_are_disjoint(raw_splits):
    train_sources = set(raw_splits["train"]["source"])
    validation_sources = set(raw_splits["validation"]["source"])
    assert train_sources.isdisjoint(validation_sources)


def test_load_raw_builtin_same_seed_same_split(raw_splits):
    again = load_raw_datasets(DataConfig(), seed=42)
    assert again["train"]["source"] == raw_splits["train"]["source"]
    assert again["validation"]["source"] == raw_splits["validation"]["source"]


def test_load_raw_builtin_other_seed_other_split(raw_splits):
    other = load_raw_datasets(DataConfig(), seed=7)
    assert set(other["validation"]["source"]) != set(raw_splits["validation"]["source"])


def test_load_raw_builtin_max_documents_and_no_validation():
    raw = load_raw_datasets(DataConfig(validation_fraction=0.0, max_documents=10), seed=42)
    assert set(raw) == {"train"}
    assert len(raw["train"]) == 10
