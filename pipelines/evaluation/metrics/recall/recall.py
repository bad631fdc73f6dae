"""Offline `recall` metric: the hub module's name and result key, loaded with `evaluate.load(<dir>)`."""

from sklearn.metrics import recall_score

from pipelines.evaluation import sklearn_metric  # a module, so evaluate finds only the class below


class Recall(sklearn_metric.SklearnClassificationMetric):
    """Fraction of positive references that are found (average as for f1)."""

    result_key = "recall"
    description = "Fraction of positive references that are found (average as for f1)."
    score = staticmethod(recall_score)
