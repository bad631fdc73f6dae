"""Offline `exact_match` metric: the hub module's name and result key, loaded with `evaluate.load(<dir>)`."""

import string

from pipelines.evaluation import text_metric  # a module, so evaluate finds only the class below

PUNCTUATION = str.maketrans("", "", string.punctuation)


class ExactMatch(text_metric.TextMetric):
    """Fraction of predictions equal to their reference, in [0, 1], after stripping surrounding whitespace.

    `ignore_case` lower-cases both sides; `ignore_punctuation` removes ASCII punctuation
    (`string.punctuation`, as the hub does) before the comparison.
    """

    description = "Fraction of predicted strings equal to their reference string."

    def _compute(
        self, predictions, references, ignore_case: bool = False, ignore_punctuation: bool = False
    ) -> dict[str, float]:
        def normalise(text: str) -> str:
            if ignore_case:
                text = text.lower()
            if ignore_punctuation:
                text = text.translate(PUNCTUATION)
            return text.strip()  # last, so "a dog ." and "a dog" match once the "." is gone

        matches = [normalise(p) == normalise(r) for p, r in zip(predictions, references, strict=True)]
        return {"exact_match": sum(matches) / len(matches)}
