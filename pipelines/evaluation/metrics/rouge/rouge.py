"""Offline `rouge` metric: the hub module's name and result keys, loaded with `evaluate.load(<dir>)`.

Mirrors the hub's `rouge` with `use_aggregator=True`, except that scores are a plain mean of F-measures
over the examples: the hub's `BootstrapAggregator` resamples with an unseeded RNG, so its value varies
from run to run.
"""

from statistics import fmean

from rouge_score import rouge_scorer

from pipelines.evaluation import text_metric  # a module, so evaluate finds only the class below

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


class _Tokenizer:
    """rouge_score wants an object with a `tokenize` method; this wraps a plain callable."""

    def __init__(self, tokenize):
        self.tokenize = tokenize


class Rouge(text_metric.TextMetric):
    """Mean ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures, each in [0, 1].

    Tokenisation is rouge_score's default, as on the hub: lower-case, then every character outside
    a-z and 0-9 becomes a separator, so accents and non-Latin scripts are dropped ("café" → "caf",
    Chinese text → no tokens, scoring 0). Pass `tokenizer=str.split` (any callable str → list[str])
    to score such text. ROUGE-Lsum treats each newline-separated line as a sentence, so put one
    sentence per line. A list of references per prediction scores against the best-matching one.
    """

    description = "ROUGE n-gram and longest-common-subsequence F-measures (Lin, 2004), via rouge_score."
    citation = "Lin, ROUGE: A Package for Automatic Evaluation of Summaries, ACL Workshop 2004."
    multi_reference = True

    def _compute(self, predictions, references, use_stemmer: bool = False, tokenizer=None) -> dict[str, float]:
        scorer = rouge_scorer.RougeScorer(
            ROUGE_TYPES, use_stemmer=use_stemmer, tokenizer=_Tokenizer(tokenizer) if tokenizer else None
        )
        scores = [
            scorer.score(ref, pred) if isinstance(ref, str) else scorer.score_multi(ref, pred)
            for pred, ref in zip(predictions, references, strict=True)
        ]
        return {key: fmean(score[key].fmeasure for score in scores) for key in ROUGE_TYPES}
