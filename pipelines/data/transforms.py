"""Pure, top-level transforms run through `datasets.map` (so they are cached and parallelisable)."""

from __future__ import annotations

from itertools import chain


def tokenize_documents(batch: dict[str, list], tokenizer, text_column: str, separator_id: int) -> dict[str, list]:
    """Token ids of each document followed by the separator (EOS or [SEP]), plus its UTF-8 byte count.

    `num_bytes` counts one extra byte per document for the separator, so that bits per byte =
    total NLL / (ln 2 · total bytes) charges the separator's prediction to real text.
    """
    texts = batch[text_column]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    input_ids = [ids + [separator_id] for ids in encoded]
    return {
        "input_ids": input_ids,
        "num_tokens": [len(ids) for ids in input_ids],
        "num_bytes": [len(t.encode("utf-8")) + 1 for t in texts],
    }


def pack_blocks(
    batch: dict[str, list], block_size: int, prefix: tuple[int, ...] = (), suffix: tuple[int, ...] = ()
) -> dict[str, list]:
    """Concatenate the batch's token ids and cut them into blocks of `block_size`, each `prefix + … + suffix`.

    Every token is kept: the tail shorter than a block becomes a final short block, which the
    collator pads (its padding is masked out of the loss).
    """
    stream = list(chain.from_iterable(batch["input_ids"]))
    step = block_size - len(prefix) - len(suffix)
    return {"input_ids": [[*prefix, *stream[i : i + step], *suffix] for i in range(0, len(stream), step)]}


def encode_classification(
    batch: dict[str, list],
    tokenizer,
    text_column: str,
    pair_column: str | None,
    label_column: str,
    label_ids: dict[str, int],
    label_map: dict[str, str] | None,
    max_length: int,
) -> dict[str, list]:
    """Tokenize sentences (or pairs) with the tokenizer's own special tokens, truncated to `max_length`,
    and turn raw labels into ids."""
    pairs = batch[pair_column] if pair_column else None
    encoded = dict(tokenizer(batch[text_column], pairs, truncation=True, max_length=max_length))
    encoded["labels"] = [label_ids[name] for name in label_names(batch[label_column], label_map)]
    return encoded


def label_names(values: list, label_map: dict[str, str] | None) -> list[str]:
    """Raw label values (ints or strings) as label names, through `label_map` when given."""
    return [label_map.get(str(v), str(v)) if label_map else str(v) for v in values]
