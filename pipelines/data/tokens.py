"""Pre-tokenized corpora on disk: one flat token file per split, written once, memory-mapped for training.

`prepare` tokenizes every document (a separator after each) into `<dir>/<split>.bin` (uint16 when the
vocabulary fits, else uint32) plus `meta.json`. Training then reads blocks straight from the page cache
instead of re-running `datasets.map`, and a block is a slice of the file, so any index can be read in
O(1): the sampler, process sharding and exact resume work as for the in-memory path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
from torch.utils.data import Dataset

from pipelines.errors import PipelineError

META = "meta.json"
REPREPARE = "prepare the tokens again with `python -m pipelines prepare --overwrite`"


def write_token_files(
    tokenized: dict, directory: Path, vocab_size: int, separator_id: int, tokenizer_hash: str
) -> dict:
    """Write each split's `input_ids` (lists of ids per document) as one flat file; returns the metadata.

    Files are written to `<split>.bin.tmp` and renamed, and `meta.json` goes last, so a directory with
    `meta.json` is always complete.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META).unlink(missing_ok=True)  # until the new files are complete, the directory is not prepared
    dtype = token_dtype(vocab_size)
    meta = {
        "dtype": np.dtype(dtype).name,
        "tokenizer_sha256": tokenizer_hash,
        "separator_id": separator_id,
        "splits": {},
    }
    for name, split in tokenized.items():
        path = directory / f"{name}.bin"
        total = 0
        with open(f"{path}.tmp", "wb") as f:
            for batch in split.iter(batch_size=1000):
                chunk = np.fromiter((t for ids in batch["input_ids"] for t in ids), dtype=dtype)
                chunk.tofile(f)
                total += len(chunk)
        os.replace(f"{path}.tmp", path)
        meta["splits"][name] = {
            "tokens": total,
            "documents": len(split),
            "bytes": int(sum(split["num_bytes"])),
        }
    (directory / META).write_text(json.dumps(meta, indent=2))
    return meta


def token_dtype(vocab_size: int) -> type:
    """The smallest unsigned integer type that holds every token id."""
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def flat_tokens(split, vocab_size: int) -> np.ndarray:
    """A tokenized split's `input_ids` (lists of ids per document) as one flat array, in order."""
    ids = split.select_columns(["input_ids"]).with_format("arrow")[:]["input_ids"]
    return pa.compute.list_flatten(ids).to_numpy().astype(token_dtype(vocab_size))


def read_meta(directory: Path) -> dict:
    """The metadata of a prepared directory, with a clear error when it is missing or incomplete."""
    path = Path(directory) / META
    if not path.is_file():
        raise PipelineError(f"no prepared tokens at {directory} (no {META}); run `python -m pipelines prepare`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        splits, itemsize = meta["splits"], np.dtype(meta["dtype"]).itemsize
        expected = {name: split["tokens"] * itemsize for name, split in splits.items()}
    except (OSError, ValueError, KeyError, TypeError) as err:  # truncated JSON, missing fields, unknown dtype
        raise PipelineError(f"{path} is damaged ({type(err).__name__}: {err}); {REPREPARE}") from None
    for name, size in expected.items():
        tokens = Path(directory) / f"{name}.bin"
        actual = tokens.stat().st_size if tokens.is_file() else None
        if actual != size:
            found = "is missing" if actual is None else f"has {actual:,} bytes"
            raise PipelineError(
                f"{tokens} {found}, but {META} lists {size:,} bytes ({splits[name]['tokens']:,} tokens); {REPREPARE}"
            )
    return meta


class TokenBlocks(Dataset):
    """Blocks of `block_size` cut from a flat token array: `prefix + tokens[i·step : (i+1)·step] + suffix`.

    Every token is kept: the last block may be short (the collator pads it), as in the in-memory path. With
    `shift_seed`, `set_epoch` rotates the array by an offset in [0, step) drawn from (seed, epoch) before cutting,
    so a text trained on for several epochs is seen in new contexts each pass instead of the same blocks again.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, prefix=(), suffix=(), shift_seed: int | None = None):
        self.tokens = tokens
        self.prefix, self.suffix = list(prefix), list(suffix)
        self.step = block_size - len(self.prefix) - len(self.suffix)
        self.shift_seed, self.offset = shift_seed, 0

    def set_epoch(self, epoch: int) -> None:
        if self.shift_seed is not None:
            self.offset = int(np.random.default_rng([self.shift_seed, epoch]).integers(self.step))

    def __len__(self) -> int:
        return -(-len(self.tokens) // self.step)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = self.offset + index * self.step
        stop = min(start + self.step, self.offset + len(self.tokens))
        window = np.take(self.tokens, np.arange(start, stop), mode="wrap")
        return {"input_ids": self.prefix + window.tolist() + self.suffix}
