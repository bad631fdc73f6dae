"""Offline `sacrebleu` metric: the hub module's name and result keys, loaded with `evaluate.load(<dir>)`."""

import sacrebleu

from pipelines.evaluation import text_metric  # a module, so evaluate finds only the class below


class Sacrebleu(text_metric.TextMetric):
    """Corpus BLEU (0–100) with its sufficient statistics, as `sacrebleu.corpus_bleu` computes it.

    References are one string or a list of strings per prediction (the same number for each).
    Keyword options go to `sacrebleu.corpus_bleu`: `tokenize` (default "13a"), `lowercase`,
    `smooth_method`, `smooth_value`, `use_effective_order`, `force`.
    """

    description = "Corpus BLEU as computed by sacrebleu, with n-gram counts, totals and brevity penalty."
    citation = "Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018."
    multi_reference = True

    def _compute(self, predictions, references, **kwargs) -> dict:
        output = sacrebleu.corpus_bleu(predictions, text_metric.reference_streams(references), **kwargs)
        return {
            "score": output.score,
            "counts": output.counts,
            "totals": output.totals,
            "precisions": output.precisions,
            "bp": output.bp,
            "sys_len": output.sys_len,
            "ref_len": output.ref_len,
        }
