"""Offline `matthews_correlation` metric: the hub module's name and result key, loaded with `evaluate.load(<dir>)`."""

from sklearn.metrics import matthews_corrcoef

from pipelines.evaluation import sklearn_metric  # a module, so evaluate finds only the class below


class MatthewsCorrelation(sklearn_metric.SklearnClassificationMetric):
    """Matthews correlation coefficient, in [-1, 1]."""

    result_key = "matthews_correlation"
    description = "Matthews correlation coefficient, in [-1, 1]."
    score = staticmethod(matthews_corrcoef)
