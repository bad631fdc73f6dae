"""Offline `accuracy` metric: the hub module's name and result key, loaded with `evaluate.load(<dir>)`."""

from sklearn.metrics import accuracy_score

from pipelines.evaluation import sklearn_metric  # a module, so evaluate finds only the class below


class Accuracy(sklearn_metric.SklearnClassificationMetric):
    """Fraction of predictions equal to the reference."""

    result_key = "accuracy"
    description = "Fraction of predictions equal to the reference."
    score = staticmethod(accuracy_score)
