"""Labelled sentences (and pairs) → encoded examples: label sets, label maps, segment ids, EOS, TREC, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from pipelines.config import DataConfig, TokenizerConfig
from pipelines.data.prepare import prepare_classification_data
from pipelines.data.preprocess import PREPROCESSORS
from pipelines.errors import PipelineError
from pipelines.tokenization import append_eos_to_sequences, load_tokenizer, train_tokenizer

WORDS = ["the film was good", "a great and fun story", "the plot was bad", "a dull and slow film", "what a movie"]


@pytest.fixture(scope="module")
def wordpiece():
    corpus = Dataset.from_dict({"text": WORDS * 4})
    return train_tokenizer(TokenizerConfig(kind="wordpiece", vocab_size=200, lowercase=True), corpus, "text")


@pytest.fixture(scope="module")
def plain_bpe():
    corpus = Dataset.from_dict({"text": WORDS * 4})
    return train_tokenizer(TokenizerConfig(kind="byte_bpe", vocab_size=280), corpus, "text")


@pytest.fixture(scope="module")
def byte_bpe(tmp_path_factory, plain_bpe):
    """The GPT tokenizer as fine-tuning uses it: EOS after every sentence (a copy: the wrapper mutates)."""
    path = tmp_path_factory.mktemp("bpe")
    plain_bpe.save_pretrained(str(path))
    return append_eos_to_sequences(load_tokenizer(path))


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _cfg(path: Path, **kw) -> DataConfig:
    kw.setdefault("validation_fraction", 0.0)
    return DataConfig(source="files", path=str(path), **kw)


def _prepare(cfg: DataConfig, tokenizer):
    return prepare_classification_data(cfg, seed=0, tokenizer=tokenizer)


# --------------------------------------------------------------------------- labels


def test_tsv_with_label_map(tmp_path, wordpiece):
    rows = [("the film was good", 1), ("the plot was bad", 0), ("a great story", 1), ("a dull film", 0)]
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    cfg = _cfg(path, text_column="sentence", label_map={"0": "negative", "1": "positive"})
    data = _prepare(cfg, wordpiece)
    assert data.labels == ["negative", "positive"]
    assert list(data.examples) == ["train"]
    train = data.examples["train"]
    assert list(train["labels"]) == [1, 0, 1, 0]
    assert set(train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    for (sentence, _), ids in zip(rows, train["input_ids"], strict=True):
        assert ids == wordpiece(sentence)["input_ids"]


def test_label_map_reorders_through_explicit_labels(tmp_path, wordpiece):
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    cfg = _cfg(
        path, text_column="sentence", label_map={"0": "negative", "1": "positive"}, labels=["positive", "negative"]
    )
    data = _prepare(cfg, wordpiece)
    assert data.labels == ["positive", "negative"]
    assert list(data.examples["train"]["labels"]) == [0, 1]


def test_string_labels_inferred_sorted(tmp_path, wordpiece):
    path = _write(tmp_path / "train.csv", "text,label\na,spam\nb,ham\nc,eggs\nd,ham\n")
    data = _prepare(_cfg(path), wordpiece)
    assert data.labels == ["eggs", "ham", "spam"]
    assert list(data.examples["train"]["labels"]) == [2, 1, 0, 1]


def test_numeric_labels_sorted_numerically(tmp_path, wordpiece):
    path = _write(tmp_path / "train.csv", "text,label\na,10\nb,2\nc,1\nd,2\n")
    data = _prepare(_cfg(path), wordpiece)
    assert data.labels == ["1", "2", "10"]  # as strings "10" would sort before "2"
    assert list(data.examples["train"]["labels"]) == [2, 1, 0, 1]


def test_labels_inferred_from_train_split_only_and_checked_in_validation(tmp_path, wordpiece):
    train = _write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\n")
    val = _write(tmp_path / "val.csv", "text,label\nc,neg\nd,neutral\n")
    with pytest.raises(PipelineError, match=r"validation data has labels not in the label set: neutral"):
        _prepare(_cfg(train, validation_path=str(val)), wordpiece)
    ok = _write(tmp_path / "ok.csv", "text,label\nc,neg\nd,pos\n")
    data = _prepare(_cfg(train, validation_path=str(ok)), wordpiece)
    assert set(data.examples) == {"train", "validation"}
    assert list(data.examples["validation"]["labels"]) == [0, 1]


def test_label_outside_configured_labels(tmp_path, wordpiece):
    path = _write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\nc,maybe\n")
    with pytest.raises(PipelineError, match=r"train data has labels not in the label set: maybe \(labels: neg, pos"):
        _prepare(_cfg(path, labels=["neg", "pos"]), wordpiece)


def test_single_label_is_an_error(tmp_path, wordpiece):
    path = _write(tmp_path / "train.csv", "text,label\na,pos\nb,pos\n")
    with pytest.raises(PipelineError, match=r"at least 2 labels; found \['pos'\]"):
        _prepare(_cfg(path), wordpiece)


# --------------------------------------------------------------------------- encoding


def test_sentence_pairs_get_segment_ids(tmp_path, wordpiece):
    path = _write(
        tmp_path / "pairs.jsonl",
        '{"premise": "the film was good", "hypothesis": "a great story", "label": "yes"}\n'
        '{"premise": "the plot was bad", "hypothesis": "what a movie", "label": "no"}\n',
    )
    cfg = _cfg(path, text_column="premise", text_pair_column="hypothesis")
    train = _prepare(cfg, wordpiece).examples["train"]
    for row, (a, b) in enumerate([("the film was good", "a great story"), ("the plot was bad", "what a movie")]):
        expected = wordpiece(a, b)
        assert train[row]["input_ids"] == expected["input_ids"]
        segments = train[row]["token_type_ids"]
        assert segments == expected["token_type_ids"]
        n_first = len(wordpiece(a)["input_ids"])  # [CLS] a [SEP]
        assert segments == [0] * n_first + [1] * (len(segments) - n_first)
        assert 1 in segments
    assert list(train["labels"]) == [1, 0]


def test_wordpiece_truncation_keeps_sep(tmp_path, wordpiece):
    path = _write(tmp_path / "t.csv", "text,label\nthe film was good and the plot was bad,a\nfilm,b\n")
    train = _prepare(_cfg(path, block_size=5), wordpiece).examples["train"]
    long, short = train["input_ids"]
    assert len(long) == 5
    assert long[0] == wordpiece.cls_token_id and long[-1] == wordpiece.sep_token_id
    assert short == wordpiece("film")["input_ids"]


def test_append_eos_to_sequences(plain_bpe, byte_bpe, wordpiece, tmp_path):
    eos = byte_bpe.eos_token_id
    plain = plain_bpe("the film", add_special_tokens=False)["input_ids"]
    assert plain_bpe("the film")["input_ids"] == plain  # byte-level BPE adds nothing by itself
    assert byte_bpe("the film")["input_ids"] == [*plain, eos]
    assert byte_bpe("the film", "good")["input_ids"] == [*plain, eos, *plain_bpe.encode("good"), eos]
    assert append_eos_to_sequences(wordpiece) is wordpiece  # already adds [CLS]/[SEP]
    assert wordpiece("film")["input_ids"][-1] == wordpiece.sep_token_id
    # the rule is saved with the tokenizer, so inference encodes as training did
    byte_bpe.save_pretrained(str(tmp_path))
    assert load_tokenizer(tmp_path)("the film")["input_ids"] == [*plain, eos]


def test_byte_bpe_examples_end_with_eos(tmp_path, byte_bpe):
    texts = ["the film was good", "a dull and slow film, the plot was bad and what a movie it was", "good"]
    path = _write(tmp_path / "t.csv", "text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(texts)))
    block = 8
    train = _prepare(_cfg(path, block_size=block), byte_bpe).examples["train"]
    eos = byte_bpe.eos_token_id
    assert set(train.column_names) == {"input_ids", "attention_mask", "labels"}
    for text, ids, mask in zip(texts, train["input_ids"], train["attention_mask"], strict=True):
        plain = byte_bpe(text, add_special_tokens=False)["input_ids"]
        assert ids[-1] == eos
        assert ids.count(eos) == 1
        assert len(ids) <= block
        assert mask == [1] * len(ids)
        if len(plain) + 1 <= block:
            assert ids == [*plain, eos]
        else:  # truncated: the first block-1 tokens, then EOS
            assert ids == [*plain[: block - 1], eos]
    assert len(train[1]["input_ids"]) == block  # the long sentence was truncated


def test_byte_bpe_pairs(tmp_path, byte_bpe):
    path = _write(tmp_path / "p.csv", "a,b,label\nthe film,was good,x\nthe plot,was bad,y\n")
    train = _prepare(_cfg(path, text_column="a", text_pair_column="b"), byte_bpe).examples["train"]
    eos = byte_bpe.eos_token_id
    enc = byte_bpe.encode
    first = enc("the film", add_special_tokens=False)
    second = enc("was good", add_special_tokens=False)
    assert train[0]["input_ids"] == [*first, eos, *second, eos]
    # truncated pairs still end with EOS, and keep one EOS per sentence
    short = _prepare(_cfg(path, text_column="a", text_pair_column="b", block_size=4), byte_bpe).examples["train"]
    assert all(len(ids) <= 4 and ids[-1] == eos and ids.count(eos) == 2 for ids in short["input_ids"])


# --------------------------------------------------------------------------- column errors


def test_pair_column_missing_lists_columns(tmp_path, wordpiece):
    path = _write(tmp_path / "t.csv", "text,label\na,x\nb,y\n")
    with pytest.raises(
        PipelineError, match=r"no column 'question' \(set data\.text_pair_column\); columns: text, label"
    ):
        _prepare(_cfg(path, text_pair_column="question"), wordpiece)


def test_label_column_missing(tmp_path, wordpiece):
    path = _write(tmp_path / "t.csv", "text,category\na,x\nb,y\n")
    with pytest.raises(PipelineError, match=r"no column 'label' \(set data\.label_column\); columns: text, category"):
        _prepare(_cfg(path), wordpiece)


def test_headerless_csv_with_column_names(tmp_path, wordpiece):
    path = _write(tmp_path / "t.csv", "positive,the film was good\nnegative,the plot was bad\npositive,fun\n")
    data = _prepare(_cfg(path, column_names=["label", "text"]), wordpiece)
    assert data.labels == ["negative", "positive"]
    train = data.examples["train"]
    assert len(train) == 3  # the first line is data, not a header
    assert list(train["labels"]) == [1, 0, 1]
    assert train[0]["input_ids"] == wordpiece("the film was good")["input_ids"]


# --------------------------------------------------------------------------- TREC


TREC = (
    "DESC:manner How did serfdom develop in and then leave Russia ?\n"
    "ENTY:cremat What films featured the character Popeye Doyle ?\n"
    "DESC:def What is a caf\u00e9 ?\n"
    "HUM:ind Who killed Gandhi ?\n"
)


def _trec_cfg(path: Path, preprocess: str) -> DataConfig:
    return _cfg(path, format="txt", sample_by="line", encoding="latin-1", preprocess=preprocess)


@pytest.fixture
def trec_file(tmp_path) -> Path:
    path = _write(tmp_path / "train_5500.label", TREC, encoding="latin-1")
    assert b"caf\xe9" in path.read_bytes()  # latin-1, not UTF-8
    return path


def test_trec_coarse(trec_file, wordpiece):
    data = _prepare(_trec_cfg(trec_file, "trec_coarse"), wordpiece)
    assert data.labels == ["DESC", "ENTY", "HUM"]
    train = data.examples["train"]
    assert list(train["labels"]) == [0, 1, 0, 2]
    assert train[0]["input_ids"] == wordpiece("How did serfdom develop in and then leave Russia ?")["input_ids"]
    assert train[2]["input_ids"] == wordpiece("What is a caf\u00e9 ?")["input_ids"]


def test_trec_preprocess_functions():
    batch = {"text": ["DESC:manner How did serfdom develop ?", "NUM:date When was it ?"]}
    assert PREPROCESSORS.get("trec_coarse")(batch) == {
        "text": ["How did serfdom develop ?", "When was it ?"],
        "label": ["DESC", "NUM"],
    }
    assert PREPROCESSORS.get("trec_fine")(batch)["label"] == ["DESC:manner", "NUM:date"]


def test_trec_fine(trec_file, wordpiece):
    data = _prepare(_trec_cfg(trec_file, "trec_fine"), wordpiece)
    assert data.labels == ["DESC:def", "DESC:manner", "ENTY:cremat", "HUM:ind"]
    assert list(data.examples["train"]["labels"]) == [1, 2, 0, 3]


def test_trec_text_is_decoded_as_latin1(trec_file):
    from pipelines.data.sources import load_raw_datasets

    raw = load_raw_datasets(_trec_cfg(trec_file, "trec_coarse"), seed=0, columns={"data.label_column": "label"})
    assert raw["train"]["text"][2] == "What is a caf\u00e9 ?"
    assert list(raw["train"]["label"]) == ["DESC", "ENTY", "DESC", "HUM"]


def test_unknown_preprocess_lists_known_names(trec_file, wordpiece):
    with pytest.raises(PipelineError, match=r"unknown data\.preprocess step 'trec'; known: trec_coarse, trec_fine"):
        _prepare(_trec_cfg(trec_file, "trec"), wordpiece)


# --------------------------------------------------------------------------- low-label subsets


def _skewed(tmp_path: Path) -> tuple[Path, Path]:
    """300 training rows, 2/3 positive, each sentence unique (its index is in it); 20 validation rows."""
    train = "".join(f"the film {i} was {'good' if i % 3 else 'bad'}\t{1 if i % 3 else 0}\n" for i in range(300))
    val = "".join(f"a story {i}\t{i % 2}\n" for i in range(20))
    return _write(tmp_path / "train.tsv", "sentence\tlabel\n" + train), _write(
        tmp_path / "dev.tsv", "sentence\tlabel\n" + val
    )


def _subset(tmp_path: Path, wordpiece, size: int, seed: int = 0):
    train, val = _skewed(tmp_path)
    cfg = _cfg(train, text_column="sentence", validation_path=str(val), max_train_examples=size)
    return prepare_classification_data(cfg, seed=seed, tokenizer=wordpiece)


def test_max_train_examples_is_a_stratified_subset_and_validation_stays_whole(tmp_path, wordpiece):
    data = _subset(tmp_path, wordpiece, 30)
    labels = list(data.examples["train"]["labels"])
    assert len(labels) == 30 and labels.count(1) == 20 and labels.count(0) == 10  # the 2:1 of the whole set
    assert len(data.examples["validation"]) == 20


def test_max_train_examples_is_deterministic_per_seed(tmp_path, wordpiece):
    def rows(seed: int) -> list:
        return list(_subset(tmp_path, wordpiece, 30, seed).examples["train"]["input_ids"])

    assert rows(0) == rows(0)
    assert rows(0) != rows(1)


def test_max_train_examples_larger_than_the_data_is_refused(tmp_path, wordpiece):
    with pytest.raises(PipelineError, match="max_train_examples is 301 but the training data has 300 examples"):
        _subset(tmp_path, wordpiece, 301)
    assert len(_subset(tmp_path, wordpiece, 300).examples["train"]) == 300  # all of it: the data as it is


def test_max_train_examples_is_for_classification_only():
    from pipelines.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="max_train_examples"):
        load_config(None, ["data.max_train_examples=100"])  # the default objective is clm
