"""Base for the offline `evaluate` modules in `metrics/`: hub names and result keys, scikit-learn arithmetic.

`evaluate.load("accuracy")` fetches a script from the hub; the modules here are loaded from a local
path instead (`evaluate.load(".../metrics/accuracy")`) and return the same keys as the hub's.
"""

from __future__ import annotations

import datasets
import evaluate


class SklearnClassificationMetric(evaluate.Metric):
    """A metric over integer predictions and references; subclasses set `score` and describe it."""

    result_key: str = ""
    description: str = ""
    score = None
    """A scikit-learn scorer `score(y_true, y_pred, **kwargs)`, set by each subclass."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.description,
            citation="Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011.",
            inputs_description="predictions: predicted labels (int); references: true labels (int).",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, **kwargs) -> dict[str, float]:
        return {self.result_key: float(self.score(references, predictions, **kwargs))}
