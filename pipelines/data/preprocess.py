"""Named preprocessing for known file layouts, selected by `data.preprocess` (pure, batched, cached)."""

from __future__ import annotations

from pipelines.registry import Registry

PREPROCESSORS = Registry("data.preprocess step")


def _split_trec(batch: dict[str, list], fine: bool) -> dict[str, list]:
    """TREC lines look like `DESC:manner How did serfdom develop ?`: the label, a space, the question."""
    labels, texts = [], []
    for line in batch["text"]:
        label, _, question = line.partition(" ")
        labels.append(label if fine else label.split(":", 1)[0])
        texts.append(question.strip())
    return {"text": texts, "label": labels}


@PREPROCESSORS.register("trec_coarse")
def trec_coarse(batch: dict[str, list]) -> dict[str, list]:
    """TREC question classification, 6 coarse classes (ABBR, DESC, ENTY, HUM, LOC, NUM)."""
    return _split_trec(batch, fine=False)


@PREPROCESSORS.register("trec_fine")
def trec_fine(batch: dict[str, list]) -> dict[str, list]:
    """TREC question classification, 50 fine classes (e.g. `DESC:manner`)."""
    return _split_trec(batch, fine=True)
