"""Raw text sources: the built-in corpus, local files, or a hub dataset → train/validation `Dataset`s."""

from __future__ import annotations

import codecs
import csv
import glob
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict

from pipelines.config import DataConfig
from pipelines.data.builtin import iter_builtin_documents, iter_code_summaries
from pipelines.data.fetch import missing_data_hint
from pipelines.data.preprocess import PREPROCESSORS
from pipelines.errors import PipelineError
from pipelines.registry import Registry

SOURCES = Registry("data source")

# File suffix → (datasets builder, builder kwargs). `.txt` also gets `sample_by` from the config.
FILE_BUILDERS = {
    ".txt": ("text", {}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t", "quoting": csv.QUOTE_NONE}),  # quotes are text in TSV corpora (SST-2)
    ".parquet": ("parquet", {}),
}


def load_raw_datasets(cfg: DataConfig, seed: int, columns: dict[str, str] | None = None) -> DatasetDict:
    """Train and validation splits of raw documents with the required columns.

    `columns` maps config keys to the columns they name (default: the text column); each must exist.
    A validation split is carved deterministically (by `seed`) when the source has none, unless
    `validation_fraction` is 0, in which case the result has no `validation` split.
    """
    columns = columns or {"data.text_column": cfg.text_column}
    train, validation = SOURCES.get(cfg.source)(cfg)
    if cfg.streaming:
        return _streaming_splits(cfg, train, validation, columns)
    if cfg.preprocess is not None:
        train, validation = (_preprocess(split, cfg.preprocess) for split in (train, validation))
    train, validation = (_flatten(split) for split in (train, validation))
    for split_name, split in (("train", train), ("validation", validation)):
        if split is None:
            continue
        for key, column in columns.items():
            if column not in split.column_names:
                raise PipelineError(
                    f"{split_name} data has no column '{column}' (set {key}); columns: {', '.join(split.column_names)}"
                )
        for column in {cfg.text_column, cfg.text_pair_column} & set(columns.values()):
            dtype = getattr(split.features[column], "dtype", type(split.features[column]).__name__)
            if dtype not in ("string", "large_string"):
                raise PipelineError(f"column '{column}' of the {split_name} data holds {dtype}, not text")
        if len(split) == 0:
            raise PipelineError(f"the {split_name} data set is empty ({_describe(cfg)})")
    if validation is None and cfg.validation_fraction > 0:
        if len(train) < 2:
            raise PipelineError(
                f"cannot carve a validation split out of {len(train)} document(s) ({_describe(cfg)}); "
                "give data.validation_path or use more documents"
            )
        try:
            parts = train.train_test_split(test_size=cfg.validation_fraction, seed=seed)
        except ValueError as err:  # e.g. a fraction that leaves no training document
            raise PipelineError(f"cannot carve data.validation_fraction={cfg.validation_fraction}: {err}") from None
        train, validation = parts["train"], parts["test"]
    if cfg.max_documents is not None:
        if cfg.max_documents <= 0:
            raise PipelineError(f"data.max_documents must be positive, got {cfg.max_documents}")
        train = train.select(range(min(cfg.max_documents, len(train))))
    splits = {"train": train} | ({"validation": validation} if validation is not None else {})
    return DatasetDict(splits)


def _streaming_splits(cfg: DataConfig, train, validation, columns: dict[str, str]) -> IterableDatasetDict:
    """Streaming counterpart of the checks and carve-out above, done lazily or on the first record only.

    Without a validation source, every k-th document (k = round(1 / validation_fraction)) is held out:
    deterministic, and it needs no length.
    """
    if cfg.preprocess is not None:
        train, validation = (split and split.map(PREPROCESSORS.get(cfg.preprocess), batched=True)
                             for split in (train, validation))  # fmt: skip
    train, validation = (_flatten_streaming(split) for split in (train, validation))
    for split_name, split in (("train", train), ("validation", validation)):
        if split is None:
            continue
        first = next(iter(split), None)
        if first is None:
            raise PipelineError(f"the {split_name} data set is empty ({_describe(cfg)})")
        for key, column in columns.items():
            if column not in first:
                raise PipelineError(
                    f"{split_name} data has no column '{column}' (set {key}); columns: {', '.join(first)}"
                )
    if validation is None and cfg.validation_fraction > 0:
        every = max(2, round(1 / cfg.validation_fraction))
        validation = train.filter(_held_out, with_indices=True, fn_kwargs={"every": every, "keep": True})
        train = train.filter(_held_out, with_indices=True, fn_kwargs={"every": every, "keep": False})
    if cfg.max_documents is not None:
        train = train.take(cfg.max_documents)
    return IterableDatasetDict({"train": train} | ({"validation": validation} if validation is not None else {}))


def _flatten(split: Dataset | None) -> Dataset | None:
    """Nested records (JSON objects in a field) become dotted columns, so `text_column: body.text` reads them."""
    if split is None or not any(isinstance(f, dict) for f in split.features.values()):
        return split
    return split.flatten()


def _flatten_streaming(split: IterableDataset | None) -> IterableDataset | None:
    """`_flatten` for a stream: decided on its declared features (a hub stream has them), else on its first record
    (local JSON streams declare none), so a stream is opened an extra time only when it must be."""
    if split is None:
        return None
    if split.features is not None:
        nested = [key for key, feature in split.features.items() if isinstance(feature, dict)]
    else:
        nested = [key for key, value in (next(iter(split), None) or {}).items() if isinstance(value, dict)]
    return split.map(_flat_record, remove_columns=nested) if nested else split


def _flat_record(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        flat |= _flat_record(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return flat


def _held_out(example: dict, index: int, every: int, keep: bool) -> bool:
    return (index % every == 0) == keep


def _preprocess(split: Dataset | None, name: str) -> Dataset | None:
    if split is None:
        return None
    return split.map(PREPROCESSORS.get(name), batched=True, remove_columns=split.column_names, desc=name)


def _describe(cfg: DataConfig) -> str:
    return cfg.source if cfg.source == "builtin" else f"{cfg.source}: {cfg.path}"


@SOURCES.register("builtin")
def load_builtin(cfg: DataConfig) -> tuple[Dataset, None]:
    """The Python standard-library documentation corpus (built once, then cached by `datasets`)."""
    builder = IterableDataset if cfg.streaming else Dataset
    return builder.from_generator(iter_builtin_documents, gen_kwargs={"python_version": sys.version}), None


@SOURCES.register("builtin_code")
def load_builtin_code(cfg: DataConfig) -> tuple[Dataset, None]:
    """(code, summary) pairs from the standard library's documented functions: the built-in text-to-text task."""
    builder = IterableDataset if cfg.streaming else Dataset
    return builder.from_generator(iter_code_summaries, gen_kwargs={"python_version": sys.version}), None


@SOURCES.register("files")
def load_files(cfg: DataConfig) -> tuple[Dataset, Dataset | None]:
    """Local `.txt`, `.json(l)`, `.csv`, `.tsv` or `.parquet` files; empty text rows are dropped."""
    train = _load_file_split(cfg.path, cfg)
    validation = _load_file_split(cfg.validation_path, cfg) if cfg.validation_path else None
    return train, validation


@SOURCES.register("parallel")
def load_parallel(cfg: DataConfig) -> tuple[Dataset, Dataset | None]:
    """Line-aligned files, one per column: `{path}.{column}` (e.g. train.en + train.de → rows {en, de})."""
    if not cfg.column_names or len(cfg.column_names) < 2:
        raise PipelineError("data.source 'parallel' needs data.column_names, the file suffixes (e.g. [en, de])")
    if cfg.streaming:
        raise PipelineError("data.source 'parallel' reads line files into memory: unset data.streaming")
    train = _load_parallel_split(cfg.path, cfg)
    validation = _load_parallel_split(cfg.validation_path, cfg) if cfg.validation_path else None
    return train, validation


def _load_parallel_split(prefix: str, cfg: DataConfig) -> Dataset:
    columns = {}
    for name in cfg.column_names:
        path = Path(f"{prefix}.{name}")
        try:
            columns[name] = path.read_text(encoding=cfg.encoding).splitlines()
        except UnicodeDecodeError as err:
            raise PipelineError(f"cannot read {path}: {err}; set data.encoding to the files' encoding") from None
        except FileNotFoundError:
            raise PipelineError(f"data file not found: {path}{missing_data_hint(str(path))}") from None
        except OSError as err:
            raise PipelineError(f"cannot read {path}: {err}") from None
    lengths = {name: len(lines) for name, lines in columns.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{prefix}.{name}: {n} lines" for name, n in lengths.items())
        raise PipelineError(f"parallel files differ in length ({shown}); line i of each must be a translation pair")
    return Dataset.from_dict(columns)


@SOURCES.register("hub")
def load_hub(cfg: DataConfig) -> tuple[Dataset, Dataset | None]:
    """A dataset from the Hugging Face hub (needs the network unless it is already cached)."""
    train = _load_hub_split(cfg, cfg.split)
    validation = _load_hub_split(cfg, cfg.validation_split) if cfg.validation_split else None
    return train, validation


def resolve_files(path: str, file_format: str | None = None) -> tuple[list[str], str]:
    """Expand a file, directory (recursively) or glob into sorted readable data files, and their type.

    The type is `file_format` when given, else each file's suffix; all files must share one type.
    """

    def suffix_of(f) -> str:
        return f".{file_format}" if file_format else Path(f).suffix

    if any(ch in path for ch in "*?["):
        files = sorted(glob.glob(path, recursive=True))
    elif Path(path).is_dir():
        files = sorted(str(p) for p in Path(path).rglob("*") if suffix_of(p) in FILE_BUILDERS)
    elif Path(path).exists():
        files = [path]
    else:
        raise PipelineError(f"data file not found: {path}{missing_data_hint(path)}")
    files = [f for f in files if Path(f).is_file()]
    if not files:
        raise PipelineError(f"no data files match {path} (supported: {', '.join(FILE_BUILDERS)})")
    for f in files:
        if suffix_of(f) not in FILE_BUILDERS:
            raise PipelineError(
                f"unsupported data file type: {f} (supported: {', '.join(FILE_BUILDERS)}; or set data.format)"
            )
        if not os.access(f, os.R_OK):
            raise PipelineError(f"data file is not readable: {f}")
    if len({FILE_BUILDERS[suffix_of(f)][0] for f in files}) > 1:
        raise PipelineError(f"{path} mixes file types; use one type per split")
    return files, suffix_of(files[0])


def _load_file_split(path: str, cfg: DataConfig) -> Dataset:
    files, suffix = resolve_files(path, cfg.format)
    builder, kwargs = FILE_BUILDERS[suffix]
    if builder == "text":
        kwargs = {**kwargs, "sample_by": cfg.sample_by, "encoding": cfg.encoding}
    elif builder == "csv":
        kwargs = {**kwargs, "encoding": cfg.encoding}
        if cfg.column_names:
            kwargs["column_names"] = cfg.column_names
    try:
        with _quiet_datasets():
            dataset = datasets.load_dataset(builder, data_files=files, split="train", streaming=cfg.streaming, **kwargs)
            first = next(iter(dataset), None) if cfg.streaming else None  # a stream reads its files only now
    except Exception as err:  # noqa: BLE001 - datasets raises many types for malformed files
        raise _read_error(path, files, builder, cfg.encoding, err) from None
    if cfg.streaming:  # the column check happens on the first record, in _streaming_splits
        has_column = first is not None and cfg.text_column in first
        return dataset.filter(_has_text, input_columns=cfg.text_column, batched=True) if has_column else dataset
    if cfg.text_column in dataset.column_names:
        dataset = dataset.filter(_has_text, input_columns=cfg.text_column, batched=True, desc="dropping empty rows")
    return dataset


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence the log lines `datasets` prints before raising: the `PipelineError` says it better, once."""
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)


def _read_error(path: str, files: list[str], builder: str, encoding: str, err: Exception) -> PipelineError:
    """Why `load_dataset` failed, as precisely as can be found: the file, the cause and, where known, the line.

    `datasets` wraps the cause in a generic "An error occurred while generating the dataset" and does not say
    which file or line; so each file is examined here (only after a failure: the happy path reads nothing twice).
    """
    for file in files:
        problem = _file_problem(Path(file), builder, encoding)
        if problem:
            return PipelineError(f"could not read {file}: {problem}")
    return PipelineError(f"could not read {path}: {_root_cause(err)}")


def _file_problem(file: Path, builder: str, encoding: str) -> str | None:
    """An empty file, a byte sequence that is not `encoding` text, or a JSON Lines record that does not parse."""
    if file.stat().st_size == 0:
        return "the file is empty"
    if builder not in ("text", "csv", "json"):
        return None
    encoding = "utf-8" if builder == "json" else encoding  # data.encoding applies to text and CSV files
    hint = "JSON files must be UTF-8" if builder == "json" else "set data.encoding to its encoding (e.g. latin-1)"
    decoder = codecs.getincrementaldecoder(encoding)()
    with file.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = decoder.decode(raw)
            except UnicodeDecodeError as err:
                byte = raw[err.start] if err.start < len(raw) else None
                shown = f"byte 0x{byte:02x}" if byte is not None else "a byte"
                return f"line {number} is not valid {encoding} text ({shown}); {hint}"
            if builder == "json" and line.strip():
                try:
                    json.loads(line.rstrip("\r\n"))  # so a column past the end points at the line's end
                except json.JSONDecodeError as err:
                    if number == 1:  # maybe not JSON Lines but one document over many lines
                        return _json_document_problem(file)
                    return f"line {number} is not valid JSON ({err.msg} at column {err.colno})"
    return None


def _json_document_problem(file: Path) -> str | None:
    """Where a whole-file JSON document fails to parse, or None when it parses."""
    try:
        json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        return f"line {err.lineno} is not valid JSON ({err.msg} at column {err.colno})"
    return None


def _root_cause(err: BaseException) -> str:
    """The first message in the exception chain that is not `datasets`' generic wrapper."""
    while isinstance(err, datasets.exceptions.DatasetGenerationError) and (err.__cause__ or err.__context__):
        err = err.__cause__ or err.__context__
    return _first_line(err)


def _has_text(texts: list[str | None]) -> list[bool]:
    return [isinstance(t, str) and bool(t.strip()) for t in texts]


def _load_hub_split(cfg: DataConfig, split: str) -> Dataset:
    try:
        return datasets.load_dataset(cfg.path, cfg.name, split=split, streaming=cfg.streaming)
    except Exception as err:  # offline, unknown name, missing split, ... all surface differently
        offline = " (offline mode is on: HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)" if _offline() else ""
        raise PipelineError(
            f"could not load hub dataset '{cfg.path}' split '{split}'{offline}: {_first_line(err)}"
        ) from None


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
