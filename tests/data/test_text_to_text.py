"""Text-to-text data: templates, missing targets and fields, overlong examples, mixtures and the pair sources."""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.data.sources import load_raw_datasets
from pipelines.data.text_to_text import fill_template, prepare_text_to_text_data, render, template_fields
from pipelines.errors import PipelineError
from pipelines.objectives.seq2seq import Seq2SeqCollator, build_seq2seq_collator, encode_seq2seq, span_packing
from pipelines.tokenization import load_tokenizer

T5 = "tokenizers/t5-builtin"
SEQ2SEQ = ["objective.name=seq2seq", f"tokenizer.path={T5}", "model.arch=t5"]


@pytest.fixture(scope="module")
def t5_tokenizer():
    return load_tokenizer(T5)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _records(word: str, n: int) -> list[dict]:
    return [{"instruction": f"{word} {i}", "input": "" if i % 2 else f"ctx {i}", "output": f"{word} answer"}
            for i in range(n)]  # fmt: skip


def _config(*overrides: str):
    return load_config(None, [*SEQ2SEQ, *overrides])


def _files(path: Path, **extra: str) -> list[str]:
    base = {
        "data.source": "files",
        "data.path": str(path),
        "data.validation_fraction": "0",
        "data.input_template": '"{instruction}\\n{input}"',
        "data.target_template": '"{output}"',
    }
    return [f"{k}={v}" for k, v in (base | extra).items()]


def _source(name: str, rate: float, data: dict, kind: str = "text_to_text") -> dict:
    return {"name": name, "kind": kind, "rate": rate, "data": data}


def _file_data(train: Path, validation: Path | None = None) -> dict:
    data = {"source": "files", "path": str(train), "input_template": "{instruction}", "target_template": "{output}"}
    return data | ({"validation_path": str(validation)} if validation else {"validation_fraction": 0})


def _mixture(*sources: dict) -> str:
    return f"data.mixture={json.dumps(list(sources))}"  # JSON is YAML


# --------------------------------------------------------------------------- templates


def test_template_fields():
    assert template_fields("{instruction}\n{input}") == ["instruction", "input"]
    assert template_fields("translate English to German: {en}") == ["en"]
    assert template_fields("{a} and {b} and {a}") == ["a", "b"]
    assert template_fields("no fields") == []
    with pytest.raises(PipelineError, match="bad template"):
        template_fields("{unclosed")


def test_render_optional_and_required_fields():
    batch = {"instruction": ["Do A.", "Do B.", "Do C."], "input": ["with x", "", None], "output": ["a", " ", None]}
    texts, missing = render(batch, "{instruction}\n{input}", required=False)
    assert texts == ["Do A.\nwith x", "Do B.", "Do C."]  # no input: just the instruction, no trailing newline
    assert missing == [False, False, False]
    texts, missing = render(batch, "{output}", required=True)
    assert texts == ["a", "", ""]
    assert missing == [False, True, True]


def test_single_source_encodes_templates(tmp_path, t5_tokenizer):
    path = _write_jsonl(tmp_path / "train.jsonl", _records("apple", 4))
    data = prepare_text_to_text_data(_config(*_files(path)), t5_tokenizer, encode_seq2seq)
    assert data.validation is None and data.templates == {str(path): "{instruction}\n{input}"}
    assert data.train["input_ids"][0] == t5_tokenizer("apple 0\nctx 0")["input_ids"]
    assert data.train["input_ids"][1] == t5_tokenizer("apple 1")["input_ids"]
    assert data.train["labels"] == [t5_tokenizer("apple answer")["input_ids"]] * 4
    assert data.counts[f"{path}/train/examples"] == 4
    assert data.counts[f"{path}/train/truncated_targets"] == 0


def test_fill_template_reads_a_dotted_field_as_one_name():
    values = {"body.text": "hi", "meta.lang": "en", "n": 7}
    assert fill_template("{body.text} ({meta.lang!r}) #{n:03d}", values) == "hi ('en') #007"
    assert template_fields("q: {question.text}") == ["question.text"]


def test_templates_over_nested_json_fields(tmp_path, t5_tokenizer):
    rows = [{"q": {"text": f"question {i}"}, "a": {"text": f"answer {i}"}} for i in range(3)]
    path = _write_jsonl(tmp_path / "nested.jsonl", rows)
    templates = {"data.input_template": '"ask: {q.text}"', "data.target_template": '"{a.text}"'}
    data = prepare_text_to_text_data(_config(*_files(path, **templates)), t5_tokenizer, encode_seq2seq)
    assert data.train["input_ids"][2] == t5_tokenizer("ask: question 2")["input_ids"]
    assert data.train["labels"][2] == t5_tokenizer("answer 2")["input_ids"]


# --------------------------------------------------------------------------- bad data


@pytest.mark.parametrize("blank", ["missing", "empty"])
def test_record_without_output_is_refused(tmp_path, t5_tokenizer, blank):
    rows = _records("apple", 5)
    if blank == "missing":
        del rows[2]["output"]
    else:
        rows[2]["output"] = ""
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(PipelineError, match=r"1 of 5 train records .*record 2"):
        prepare_text_to_text_data(_config(*_files(path)), t5_tokenizer, encode_seq2seq)


def test_template_naming_an_absent_field(tmp_path, t5_tokenizer):
    path = _write_jsonl(tmp_path / "train.jsonl", _records("apple", 3))
    cfg = _config(*_files(path, **{"data.input_template": '"{code}"'}))
    with pytest.raises(PipelineError, match=r"'code'.*columns: instruction, input, output"):
        prepare_text_to_text_data(cfg, t5_tokenizer, encode_seq2seq)


def test_overlong_targets(tmp_path, t5_tokenizer):
    rows = _records("apple", 5)
    for i in (0, 3, 4):
        rows[i]["output"] = " ".join(["a long answer that does not fit"] * 3)
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    overlong = ["objective.max_target_length=6"]
    with pytest.raises(PipelineError, match=r"0 train inputs .* 3 targets longer .*\(6\)"):
        cfg = _config(*_files(path), *overlong, "objective.overlong=refuse")
        prepare_text_to_text_data(cfg, t5_tokenizer, encode_seq2seq)
    data = prepare_text_to_text_data(_config(*_files(path), *overlong), t5_tokenizer, encode_seq2seq)
    assert data.counts[f"{path}/train/truncated_targets"] == 3
    assert data.counts[f"{path}/train/truncated_inputs"] == 0
    full = [len(t5_tokenizer(r["output"])["input_ids"]) for r in rows]
    assert [len(ids) for ids in data.train["labels"]] == [min(n, 6) for n in full] and full[1] < 6
    assert all(ids[-1] == t5_tokenizer.eos_token_id for ids in data.train["labels"])


# --------------------------------------------------------------------------- mixtures


def _by_ids(tokenizer, name: str, rows: list[dict]) -> dict[tuple[int, ...], tuple[str, int]]:
    return {tuple(tokenizer(r["instruction"])["input_ids"]): (name, i) for i, r in enumerate(rows)}


def test_mixture_interleaves_by_rate(tmp_path, t5_tokenizer):
    a, b = _records("apple", 40), _records("berry", 40)
    va, vb = _records("cherry", 3), _records("damson", 2)
    paths = {n: _write_jsonl(tmp_path / f"{n}.jsonl", rows) for n, rows in {"a": a, "b": b, "va": va, "vb": vb}.items()}
    mixture = _mixture(
        _source("a", 3, _file_data(paths["a"], paths["va"])), _source("b", 1, _file_data(paths["b"], paths["vb"]))
    )
    data = prepare_text_to_text_data(_config(mixture), t5_tokenizer, encode_seq2seq)
    known = _by_ids(t5_tokenizer, "a", a) | _by_ids(t5_tokenizer, "b", b)
    seen = [known[tuple(ids)] for ids in data.train["input_ids"]]  # every example comes from a or b
    per_source = Counter(name for name, _ in seen)
    assert 0.65 < per_source["a"] / len(seen) < 0.85, per_source  # rates 3 : 1
    assert {i for name, i in seen if name == "a"} == set(range(40))  # "all exhausted": every example shown
    assert {i for name, i in seen if name == "b"} == set(range(40))
    assert set(data.templates) == {"a", "b"}
    assert data.counts["a/validation/examples"] == 3 and data.counts["b/validation/examples"] == 2
    held_out = _by_ids(t5_tokenizer, "va", va) | _by_ids(t5_tokenizer, "vb", vb)
    assert sorted(held_out[tuple(ids)] for ids in data.validation["input_ids"]) == sorted(held_out.values())


def test_span_corruption_source_in_a_mixture(tmp_path, t5_tokenizer):
    path = _write_jsonl(tmp_path / "pairs.jsonl", _records("apple", 20))
    raw = _source("raw", 1, {"source": "builtin", "max_documents": 5}, "span_corruption")
    cfg = _config("data.block_size=32", _mixture(_source("pairs", 1, _file_data(path)), raw))
    data = prepare_text_to_text_data(cfg, t5_tokenizer, encode_seq2seq, span_packing(t5_tokenizer, cfg))
    blocks = [e for e in data.train if not e["labels"]]
    pairs = [e for e in data.train if e["labels"]]
    assert blocks and pairs
    assert all(len(e["input_ids"]) <= 34 for e in blocks)  # raw_length_for(32) = 34
    assert sum(len(e["input_ids"]) == 34 for e in blocks) >= len(blocks) - 1
    assert data.validation is None and set(data.templates) == {"pairs"}  # span sources train only
    collator = build_seq2seq_collator(t5_tokenizer, cfg.objective)
    assert isinstance(collator, Seq2SeqCollator)
    batch = collator([blocks[0], pairs[0]])
    assert batch["input_ids"].shape[1] == 32  # a full raw block corrupts to exactly data.block_size


def test_span_corruption_source_needs_an_encoder_decoder(tmp_path):
    path = _write_jsonl(tmp_path / "pairs.jsonl", _records("apple", 5))
    raw = _source("raw", 1, {"source": "builtin"}, "span_corruption")
    instruct = ["objective.name=instruct", "objective.max_target_length=16", "data.block_size=32"]
    with pytest.raises(PipelineError, match=r"'data.mixture\[1\]': span corruption trains encoder-decoders"):
        load_config(None, [*instruct, _mixture(_source("pairs", 1, _file_data(path)), raw)])  # refused at load
    cfg = load_config(None, ["objective.name=seq2seq", _mixture(_source("pairs", 1, _file_data(path)), raw)])
    with pytest.raises(PipelineError, match="'raw': span corruption needs an encoder-decoder"):
        prepare_text_to_text_data(cfg, load_tokenizer("tokenizers/t5-builtin"), encode_seq2seq)  # no span packing


# --------------------------------------------------------------------------- the parallel source


def _parallel(tmp_path: Path, en: list[str], de: list[str], *extra: str):
    (tmp_path / "train.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("\n".join(de) + "\n", encoding="utf-8")
    base = ["data.source=parallel", f"data.path={tmp_path / 'train'}", "data.validation_fraction=0"]
    return load_config(None, [*base, *extra]).data


def test_parallel_zips_line_files(tmp_path):
    cfg = _parallel(tmp_path, ["a cat", "a dog", "two birds"], ["eine Katze", "ein Hund", "zwei Vögel"],
                    "data.column_names=[en, de]")  # fmt: skip
    raw = load_raw_datasets(cfg, 0, {"en": "en", "de": "de"})
    assert set(raw) == {"train"}
    assert raw["train"].to_list() == [
        {"en": "a cat", "de": "eine Katze"},
        {"en": "a dog", "de": "ein Hund"},
        {"en": "two birds", "de": "zwei Vögel"},
    ]


def test_parallel_files_of_different_lengths(tmp_path):
    cfg = _parallel(tmp_path, ["a", "b", "c"], ["x", "y"], "data.column_names=[en, de]")
    with pytest.raises(PipelineError, match=r"train\.en: 3 lines.*train\.de: 2 lines"):
        load_raw_datasets(cfg, 0, {"en": "en", "de": "de"})


def test_parallel_needs_column_names(tmp_path):
    cfg = _parallel(tmp_path, ["a"], ["x"])
    with pytest.raises(PipelineError, match="column_names"):
        load_raw_datasets(cfg, 0, {"en": "en", "de": "de"})


# --------------------------------------------------------------------------- the builtin_code source


def test_builtin_code_pairs_have_no_docstrings():
    cfg = load_config(None, ["data.source=builtin_code", "data.validation_fraction=0"]).data
    rows = load_raw_datasets(cfg, 0, {"code": "code", "summary": "summary"})["train"]
    assert len(rows) > 100 and {"code", "summary"} <= set(rows.column_names)
    for code, summary in zip(rows["code"], rows["summary"], strict=True):
        assert summary.strip()
        (function,) = ast.parse(code).body
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) and function.body
        first = function.body[0]
        is_string = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        assert not (is_string and isinstance(first.value.value, str) and summary in " ".join(first.value.value.split()))
