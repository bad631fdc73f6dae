"""Offline `precision` metric: the hub module's name and result key, loaded with `evaluate.load(<dir>)`."""

from sklearn.metrics import precision_score

from pipelines.evaluation import sklearn_metric  # a module, so evaluate finds only the class below


class Precision(sklearn_metric.SklearnClassificationMetric):
    """Fraction of positive predictions that are correct (average as for f1)."""

    result_key = "precision"
    description = "Fraction of positive predictions that are correct (average as for f1)."
    score = staticmethod(precision_score)
