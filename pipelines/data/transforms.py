"""Pure, top-level transforms run through `datasets.map` (so they are cached and parallelisable)."""

from __future__ import annotations

from itertools import chain


def tokenize_documents(batch: dict[str, list], tokenizer, text_column: str) -> dict[str, list]:
    """Token ids of each document followed by EOS, plus its UTF-8 byte count.

    `num_bytes` counts one extra byte per document for the separator that EOS stands for, so that
    bits per byte = total NLL / (ln 2 · total bytes) charges the EOS prediction to real text.
    """
    texts = batch[text_column]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    input_ids = [ids + [eos] for ids in encoded]
    return {
        "input_ids": input_ids,
        "num_tokens": [len(ids) for ids in input_ids],
        "num_bytes": [len(t.encode("utf-8")) + 1 for t in texts],
    }


def pack_blocks(batch: dict[str, list], block_size: int) -> dict[str, list]:
    """Concatenate the batch's token ids and cut them into blocks of `block_size`.

    Every token is kept: the tail shorter than a block becomes a final short block, which the
    collator pads (its padding is masked out of the loss).
    """
    stream = list(chain.from_iterable(batch["input_ids"]))
    return {"input_ids": [stream[i : i + block_size] for i in range(0, len(stream), block_size)]}
