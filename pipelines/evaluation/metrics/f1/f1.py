"""Offline `f1` metric: the hub module's name and result key, loaded with `evaluate.load(<dir>)`."""

from sklearn.metrics import f1_score

from pipelines.evaluation import sklearn_metric  # a module, so evaluate finds only the class below


class F1(sklearn_metric.SklearnClassificationMetric):
    """Harmonic mean of precision and recall (average: binary, macro, micro, weighted)."""

    result_key = "f1"
    description = "Harmonic mean of precision and recall (average: binary, macro, micro, weighted)."
    score = staticmethod(f1_score)
