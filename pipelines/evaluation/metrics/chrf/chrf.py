"""Offline `chrf` metric: the hub module's name and result keys, loaded with `evaluate.load(<dir>)`."""

from sacrebleu.metrics import CHRF

from pipelines.evaluation import text_metric  # a module, so evaluate finds only the class below


# `Chrf`, not the hub's `ChrF`: evaluate names a module after its class, and this gives "chrf", not "chr_f"
class Chrf(text_metric.TextMetric):
    """Corpus chrF (0–100), or chrF++ with `word_order=2`, as sacrebleu computes it.

    References are one string or a list of strings per prediction (the same number for each).
    Options and defaults are the hub's: `char_order=6`, `word_order=0`, `beta=2`, `lowercase=False`,
    `whitespace=False`, `eps_smoothing=False`.
    """

    description = "Character n-gram F-score (chrF, chrF++) as computed by sacrebleu."
    citation = "Popović, chrF: character n-gram F-score for automatic MT evaluation, WMT 2015."
    multi_reference = True

    def _compute(
        self,
        predictions,
        references,
        char_order: int = CHRF.CHAR_ORDER,
        word_order: int = CHRF.WORD_ORDER,
        beta: int = CHRF.BETA,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ) -> dict:
        # the CHRF class (what `sacrebleu.corpus_chrf` wraps) because it takes the hub's `lowercase` and `whitespace`
        chrf = CHRF(char_order, word_order, beta, lowercase, whitespace, eps_smoothing)
        output = chrf.corpus_score(predictions, text_metric.reference_streams(references))
        return {
            "score": output.score,
            "char_order": output.char_order,
            "word_order": output.word_order,
            "beta": output.beta,
        }
