"""Local-file and hub sources: file types, splits, filtering and the error messages users see."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from pipelines.config import DataConfig
from pipelines.data.sources import load_raw_datasets, resolve_files
from pipelines.errors import PipelineError

TEXT = "alpha one\nalpha two\n\nbeta one\n\n\ngamma one\ngamma two\ngamma three\n"
# lines: 6 non-empty; paragraphs: 3 (alpha, beta, gamma); document: 1


def _files_cfg(path: Path | str, **kw) -> DataConfig:
    kw.setdefault("validation_fraction", 0.0)
    return DataConfig(source="files", path=str(path), **kw)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


# --------------------------------------------------------------------------- .txt


@pytest.mark.parametrize(
    ("sample_by", "expected"),
    [
        ("line", ["alpha one", "alpha two", "beta one", "gamma one", "gamma two", "gamma three"]),
        ("paragraph", ["alpha one\nalpha two", "beta one", "gamma one\ngamma two\ngamma three"]),
    ],
)
def test_txt_sample_by(tmp_path, sample_by, expected):
    path = _write(tmp_path / "a.txt", TEXT)
    raw = load_raw_datasets(_files_cfg(path, sample_by=sample_by), seed=0)
    assert set(raw) == {"train"}
    texts = [t.strip() for t in raw["train"]["text"]]
    assert texts == expected


def test_txt_sample_by_document(tmp_path):
    a = _write(tmp_path / "d" / "a.txt", TEXT)
    _write(tmp_path / "d" / "b.txt", "second file\n")
    raw = load_raw_datasets(_files_cfg(a.parent, sample_by="document"), seed=0)
    texts = raw["train"]["text"]
    assert len(texts) == 2
    assert texts[0].strip() == TEXT.strip()


# --------------------------------------------------------------------------- other formats


def test_jsonl_custom_text_column(tmp_path):
    path = _write_jsonl(
        tmp_path / "a.jsonl",
        [{"body": "first", "id": 1}, {"body": "second", "id": 2}, {"body": "third", "id": 3}],
    )
    raw = load_raw_datasets(_files_cfg(path, text_column="body"), seed=0)
    assert raw["train"]["body"] == ["first", "second", "third"]


NESTED = [{"body": {"text": f"doc {i}", "meta": {"lang": "en"}}, "label": {"name": ["neg", "pos"][i % 2]}}
          for i in range(4)]  # fmt: skip


def test_a_stream_with_declared_features_is_flattened_without_being_read():
    from pipelines.data.sources import _flatten_streaming

    reads = []

    def records():
        reads.append(1)
        yield from NESTED

    features = datasets.Dataset.from_list(NESTED).features
    stream = _flatten_streaming(datasets.IterableDataset.from_generator(records, features=features))
    assert not reads  # decided on the features (a hub stream declares them), not on a first record
    assert next(iter(stream)) == {"body.text": "doc 0", "body.meta.lang": "en", "label.name": "neg"}


@pytest.mark.parametrize("streaming", [False, True])
def test_nested_json_fields_are_read_by_dotted_path(tmp_path, streaming):
    path = _write_jsonl(tmp_path / "nested.jsonl", NESTED)
    cfg = _files_cfg(path, text_column="body.text", streaming=streaming)
    raw = load_raw_datasets(cfg, seed=0, columns={"data.text_column": "body.text", "data.label_column": "label.name"})
    records = list(raw["train"])
    assert [r["body.text"] for r in records] == ["doc 0", "doc 1", "doc 2", "doc 3"]
    assert [r["label.name"] for r in records] == ["neg", "pos", "neg", "pos"]
    assert records[0]["body.meta.lang"] == "en"  # nested at any depth


def test_a_dotted_path_that_is_not_there_lists_the_dotted_columns(tmp_path):
    path = _write_jsonl(tmp_path / "nested.jsonl", NESTED)
    with pytest.raises(PipelineError, match=r"body\.txt.*body\.text"):
        load_raw_datasets(_files_cfg(path, text_column="body.txt"), seed=0)


def test_json_and_jsonl_are_one_type(tmp_path):
    _write_jsonl(tmp_path / "d" / "a.json", [{"text": "from json"}])
    _write_jsonl(tmp_path / "d" / "b.jsonl", [{"text": "from jsonl"}])
    raw = load_raw_datasets(_files_cfg(tmp_path / "d"), seed=0)
    assert raw["train"]["text"] == ["from json", "from jsonl"]


def test_csv(tmp_path):
    path = _write(tmp_path / "a.csv", 'text,label\nhello world,1\n"with, comma",0\n')
    raw = load_raw_datasets(_files_cfg(path), seed=0)
    assert raw["train"]["text"] == ["hello world", "with, comma"]


def test_tsv(tmp_path):
    path = _write(tmp_path / "a.tsv", "id\ttext\n1\tone, two\n2\tthree\n")
    raw = load_raw_datasets(_files_cfg(path), seed=0)
    assert raw["train"]["text"] == ["one, two", "three"]


def test_parquet(tmp_path):
    path = tmp_path / "a.parquet"
    datasets.Dataset.from_dict({"text": ["p one", "p two", "p three"], "n": [1, 2, 3]}).to_parquet(str(path))
    raw = load_raw_datasets(_files_cfg(path), seed=0)
    assert raw["train"]["text"] == ["p one", "p two", "p three"]


def test_directory_is_recursive_and_sorted(tmp_path):
    _write(tmp_path / "d" / "b.txt", "bee\n")
    _write(tmp_path / "d" / "a.txt", "ay\n")
    _write(tmp_path / "d" / "sub" / "c.txt", "sea\n")
    _write(tmp_path / "d" / "notes.md", "ignored: not a data suffix\n")
    raw = load_raw_datasets(_files_cfg(tmp_path / "d", sample_by="line"), seed=0)
    assert raw["train"]["text"] == ["ay", "bee", "sea"]


def test_glob(tmp_path):
    _write(tmp_path / "train_1.txt", "one\n")
    _write(tmp_path / "train_2.txt", "two\n")
    _write(tmp_path / "other.txt", "other\n")
    raw = load_raw_datasets(_files_cfg(tmp_path / "train_*.txt", sample_by="line"), seed=0)
    assert raw["train"]["text"] == ["one", "two"]


def test_resolve_files_orders_and_filters(tmp_path):
    _write(tmp_path / "b.csv", "text\nx\n")
    _write(tmp_path / "a.csv", "text\ny\n")
    assert resolve_files(str(tmp_path)) == ([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], ".csv")
    assert resolve_files(str(tmp_path / "a.csv")) == ([str(tmp_path / "a.csv")], ".csv")


def test_resolve_files_format_overrides_the_suffix(tmp_path):
    label = _write(tmp_path / "d" / "train_5500.label", "DESC:manner How ?\n")
    with pytest.raises(PipelineError, match=r"unsupported data file type: .*train_5500\.label.*set data\.format"):
        resolve_files(str(label))
    assert resolve_files(str(label), "txt") == ([str(label)], ".txt")
    assert resolve_files(str(tmp_path / "d"), "txt") == ([str(label)], ".txt")


def test_txt_format_and_encoding(tmp_path):
    path = tmp_path / "questions.label"
    path.write_bytes("caf\u00e9 one\nna\u00efve two\n".encode("latin-1"))
    raw = load_raw_datasets(_files_cfg(path, format="txt", encoding="latin-1", sample_by="line"), seed=0)
    assert raw["train"]["text"] == ["caf\u00e9 one", "na\u00efve two"]


def test_required_columns_are_checked_by_config_key(tmp_path):
    path = _write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": 1}])
    columns = {"data.text_column": "text", "data.label_column": "target"}
    with pytest.raises(PipelineError, match=r"no column 'target' \(set data\.label_column\); columns: text, label"):
        load_raw_datasets(_files_cfg(path), seed=0, columns=columns)
    raw = load_raw_datasets(_files_cfg(path), seed=0, columns={"data.label_column": "label"})
    assert raw["train"]["label"] == [1]  # non-text columns are fine when they are not text columns


# --------------------------------------------------------------------------- splits and filtering


def test_validation_path_used_instead_of_carving(tmp_path):
    train = _write(tmp_path / "train.txt", "t1\nt2\nt3\nt4\n")
    val = _write(tmp_path / "val.txt", "v1\nv2\n")
    cfg = _files_cfg(train, validation_path=str(val), sample_by="line", validation_fraction=0.5)
    raw = load_raw_datasets(cfg, seed=0)
    assert raw["train"]["text"] == ["t1", "t2", "t3", "t4"]  # nothing carved out of train
    assert raw["validation"]["text"] == ["v1", "v2"]


def test_validation_carved_when_no_validation_path(tmp_path):
    lines = [f"line {i}" for i in range(20)]
    path = _write(tmp_path / "a.txt", "\n".join(lines) + "\n")
    raw = load_raw_datasets(_files_cfg(path, sample_by="line", validation_fraction=0.25), seed=3)
    assert len(raw["validation"]) == 5
    assert len(raw["train"]) == 15
    assert sorted([*raw["train"]["text"], *raw["validation"]["text"]]) == sorted(lines)
    again = load_raw_datasets(_files_cfg(path, sample_by="line", validation_fraction=0.25), seed=3)
    assert again["validation"]["text"] == raw["validation"]["text"]


def test_max_documents(tmp_path):
    path = _write(tmp_path / "a.txt", "".join(f"doc {i}\n" for i in range(10)))
    raw = load_raw_datasets(_files_cfg(path, sample_by="line", max_documents=4), seed=0)
    assert raw["train"]["text"] == ["doc 0", "doc 1", "doc 2", "doc 3"]
    more = load_raw_datasets(_files_cfg(path, sample_by="line", max_documents=100), seed=0)
    assert len(more["train"]) == 10


def test_max_documents_only_limits_train(tmp_path):
    train = _write(tmp_path / "train.txt", "a\nb\nc\n")
    val = _write(tmp_path / "val.txt", "x\ny\nz\n")
    raw = load_raw_datasets(_files_cfg(train, validation_path=str(val), sample_by="line", max_documents=1), seed=0)
    assert raw["train"]["text"] == ["a"]
    assert len(raw["validation"]) == 3


def test_empty_text_rows_dropped(tmp_path):
    path = _write_jsonl(
        tmp_path / "a.jsonl",
        [{"text": "keep me"}, {"text": ""}, {"text": "   \n "}, {"text": None}, {"text": "me too"}],
    )
    raw = load_raw_datasets(_files_cfg(path), seed=0)
    assert raw["train"]["text"] == ["keep me", "me too"]


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError, match=r"data file not found: .*missing\.txt"):
        load_raw_datasets(_files_cfg(tmp_path / "missing.txt"), seed=0)


def test_missing_validation_file(tmp_path):
    train = _write(tmp_path / "a.txt", "x\n")
    with pytest.raises(PipelineError, match=r"data file not found: .*nope\.txt"):
        load_raw_datasets(_files_cfg(train, validation_path=str(tmp_path / "nope.txt")), seed=0)


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(PipelineError, match="no data files match"):
        load_raw_datasets(_files_cfg(tmp_path / "*.txt"), seed=0)


def test_empty_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(PipelineError, match="no data files match"):
        load_raw_datasets(_files_cfg(tmp_path / "d"), seed=0)


def test_empty_file(tmp_path):
    path = _write(tmp_path / "empty.txt", "")
    with pytest.raises(PipelineError, match="empty"):
        load_raw_datasets(_files_cfg(path), seed=0)


def test_all_rows_empty(tmp_path):
    path = _write(tmp_path / "blank.txt", "\n   \n\n\t\n")
    with pytest.raises(PipelineError, match=r"the train data set is empty \(files: .*blank\.txt\)"):
        load_raw_datasets(_files_cfg(path, sample_by="line"), seed=0)


def test_missing_text_column_lists_columns(tmp_path):
    path = _write_jsonl(tmp_path / "a.jsonl", [{"body": "x", "title": "t"}])
    with pytest.raises(PipelineError, match=r"no column 'text'.*columns: body, title"):
        load_raw_datasets(_files_cfg(path), seed=0)


def test_mixed_file_types(tmp_path):
    _write(tmp_path / "d" / "a.txt", "x\n")
    _write(tmp_path / "d" / "b.csv", "text\ny\n")
    with pytest.raises(PipelineError, match="mixes file types"):
        load_raw_datasets(_files_cfg(tmp_path / "d"), seed=0)


@pytest.mark.parametrize("name", ["notes.md", "data.xml"])
def test_unsupported_suffix(tmp_path, name):
    path = _write(tmp_path / name, "x\n")
    with pytest.raises(PipelineError, match=r"unsupported data file type: .*" + name.replace(".", r"\.")):
        load_raw_datasets(_files_cfg(path), seed=0)


def test_unsupported_suffix_in_glob(tmp_path):
    _write(tmp_path / "a.txt", "x\n")
    _write(tmp_path / "a.md", "y\n")
    with pytest.raises(PipelineError, match=r"unsupported data file type: .*a\.md"):
        load_raw_datasets(_files_cfg(tmp_path / "a.*"), seed=0)


def test_malformed_file_is_pipeline_error(tmp_path):
    path = _write(tmp_path / "bad.jsonl", '{"text": "ok"}\n{not json\n')
    with pytest.raises(PipelineError, match=r"could not read .*bad\.jsonl"):
        load_raw_datasets(_files_cfg(path), seed=0)


def test_single_document_cannot_be_split(tmp_path):
    path = _write(tmp_path / "one.txt", "just one document\n")
    cfg = _files_cfg(path, sample_by="document", validation_fraction=0.1)
    with pytest.raises(PipelineError, match=r"cannot carve a validation split out of 1 document"):
        load_raw_datasets(cfg, seed=0)


def test_single_document_without_validation_is_fine(tmp_path):
    path = _write(tmp_path / "one.txt", "just one document\n")
    raw = load_raw_datasets(_files_cfg(path, sample_by="document", validation_fraction=0.0), seed=0)
    assert len(raw["train"]) == 1 and "validation" not in raw


def test_max_documents_zero_is_an_error(tmp_path):
    path = _write(tmp_path / "a.txt", "a\nb\nc\n")
    with pytest.raises(PipelineError, match="max_documents"):
        load_raw_datasets(_files_cfg(path, sample_by="line", max_documents=0), seed=0)


def test_validation_fraction_too_large_for_data(tmp_path):
    path = _write(tmp_path / "a.txt", "a\nb\nc\n")
    with pytest.raises(PipelineError, match="validation_fraction=0.9"):
        load_raw_datasets(_files_cfg(path, sample_by="line", validation_fraction=0.9), seed=0)


def test_non_string_text_column(tmp_path):
    path = _write(tmp_path / "numbers.csv", "text\n1\n2\n3\n")
    with pytest.raises(PipelineError, match="not text"):
        load_raw_datasets(_files_cfg(path), seed=0)


# --------------------------------------------------------------------------- hub


def _force_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for attr in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if hasattr(datasets.config, attr):
            monkeypatch.setattr(datasets.config, attr, True)


def test_hub_offline_is_pipeline_error(monkeypatch):
    _force_offline(monkeypatch)
    cfg = DataConfig(source="hub", path="no-such-user/no-such-dataset", validation_fraction=0.0)
    with pytest.raises(PipelineError, match=r"could not load hub dataset 'no-such-user/no-such-dataset' split 'train'"):
        load_raw_datasets(cfg, seed=0)


def test_hub_offline_message_says_offline(monkeypatch):
    _force_offline(monkeypatch)
    cfg = DataConfig(source="hub", path="no-such-user/no-such-dataset", split="validation")
    with pytest.raises(PipelineError) as info:
        load_raw_datasets(cfg, seed=0)
    message = str(info.value)
    assert "split 'validation'" in message
    assert "offline mode is on" in message
    assert "\n" not in message  # one line for the CLI
