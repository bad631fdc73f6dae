"""Base for the offline text-generation modules in `metrics/`: hub names and result keys over string inputs.

Like `sklearn_metric.py` for the classification modules: each module is loaded from a local path
(`evaluate.load(".../metrics/rouge")`) instead of the hub and returns the same keys as the hub's.
"""

from __future__ import annotations

import datasets
import evaluate

SINGLE = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
MULTI = datasets.Features(
    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
)


class TextMetric(evaluate.Metric):
    """A metric over predicted strings and reference strings; subclasses describe it and set `multi_reference`."""

    description: str = ""
    citation: str = ""
    multi_reference: bool = False
    """Whether a reference may also be a list of strings (the same number for every prediction)."""

    def _info(self) -> evaluate.MetricInfo:
        inputs = "predictions: generated texts (str); references: one reference text (str) per prediction"
        return evaluate.MetricInfo(
            description=self.description,
            citation=self.citation,
            inputs_description=inputs + (", or a list of them." if self.multi_reference else "."),
            # evaluate uses the first feature set that encodes the first example
            features=[SINGLE, MULTI] if self.multi_reference else SINGLE,
        )


def reference_streams(references: list[str] | list[list[str]]) -> list[list[str]]:
    """Per-prediction references → sacrebleu's layout: one list per reference position, aligned with predictions."""
    per_prediction = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    counts = {len(refs) for refs in per_prediction}
    if len(counts) > 1:
        raise ValueError(f"every prediction needs the same number of references, got {sorted(counts)}")
    return [list(stream) for stream in zip(*per_prediction, strict=True)]
