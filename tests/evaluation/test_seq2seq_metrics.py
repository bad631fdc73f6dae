"""Offline text-generation metrics (rouge, sacrebleu, chrf, exact_match): hand arithmetic and the hub's keys."""

from __future__ import annotations

import math

import pytest
import sacrebleu

from pipelines.evaluation.classification import load_metric

TEXT_METRICS = ["chrf", "exact_match", "rouge", "sacrebleu"]


def f_measure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall)


@pytest.fixture(scope="module")
def metrics() -> dict[str, object]:
    return {name: load_metric(name) for name in TEXT_METRICS}


@pytest.mark.parametrize("name", TEXT_METRICS)
def test_loads_offline_from_the_bundled_module(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_metric(name).name == name


# --------------------------------------------------------------------------- rouge

# "the cat sat" vs "the cat sat on the mat": 3 of 3 predicted unigrams match, 3 of 6 reference ones;
# 2 of 2 bigrams ("the cat", "cat sat") against 5; the longest common subsequence is 3 tokens
SHORT = ("the cat sat", "the cat sat on the mat")
SHORT_HAND = {
    "rouge1": f_measure(3 / 3, 3 / 6),
    "rouge2": f_measure(2 / 2, 2 / 5),
    "rougeL": f_measure(3 / 3, 3 / 6),
    "rougeLsum": f_measure(3 / 3, 3 / 6),
}
# "sat the cat" vs "the cat sat": every unigram matches, 1 of 2 bigrams ("the cat"), LCS "the cat" = 2 of 3
SWAPPED = ("sat the cat", "the cat sat")
SWAPPED_HAND = {"rouge1": 1.0, "rouge2": f_measure(1 / 2, 1 / 2), "rougeL": 2 / 3, "rougeLsum": 2 / 3}


@pytest.mark.parametrize(("pair", "hand"), [(SHORT, SHORT_HAND), (SWAPPED, SWAPPED_HAND)])
def test_rouge_equals_hand_values(metrics, pair, hand):
    prediction, reference = pair
    result = metrics["rouge"].compute(predictions=[prediction], references=[reference])
    assert set(result) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}  # the hub's keys with use_aggregator=True
    assert all(isinstance(value, float) for value in result.values())
    assert result == pytest.approx(hand, abs=1e-12)


def test_rouge_is_the_mean_over_examples(metrics):
    result = metrics["rouge"].compute(predictions=[SHORT[0], SWAPPED[0]], references=[SHORT[1], SWAPPED[1]])
    assert result == pytest.approx({key: (SHORT_HAND[key] + SWAPPED_HAND[key]) / 2 for key in SHORT_HAND}, abs=1e-12)


def test_rouge_lsum_matches_sentence_by_sentence(metrics):
    # the same two sentences in the other order: one LCS over all 6 tokens spans only 3 of them,
    # while ROUGE-Lsum matches each newline-separated reference sentence in full
    result = metrics["rouge"].compute(predictions=["the cat sat\non the mat"], references=["on the mat\nthe cat sat"])
    assert result["rougeL"] == pytest.approx(3 / 6)
    assert result["rougeLsum"] == pytest.approx(1.0)


def test_rouge_case_multi_reference_and_non_ascii(metrics):
    rouge = metrics["rouge"]
    assert rouge.compute(predictions=["The Cat Sat"], references=["the cat sat"])["rouge1"] == 1.0
    assert rouge.compute(predictions=["the cat sat"], references=[["a dog ran", "the cat sat"]])["rouge1"] == 1.0
    # the default tokenizer keeps only a-z and 0-9, so CJK text has no tokens at all; a custom one scores it
    assert rouge.compute(predictions=["猫 が 座った"], references=["猫 が 座った"])["rouge1"] == 0.0
    split = rouge.compute(predictions=["猫 が 座った"], references=["猫 が 走った"], tokenizer=str.split)
    assert split["rouge1"] == pytest.approx(f_measure(2 / 3, 2 / 3))


# --------------------------------------------------------------------------- sacrebleu

BLEU_KEYS = {"score", "counts", "totals", "precisions", "bp", "sys_len", "ref_len"}


def test_bleu_of_identical_sentences_is_100(metrics):
    result = metrics["sacrebleu"].compute(
        predictions=["the quick brown fox jumps"], references=["the quick brown fox jumps"]
    )
    assert set(result) == BLEU_KEYS
    assert result["score"] == pytest.approx(100.0)


def test_bleu_equals_hand_value(metrics):
    # hypothesis (6 tokens): the cat sat on the mat; reference (7 tokens): the cat sat on the red mat
    # 1-grams: all 6 match ("the" occurs twice in both)
    # 2-grams: the cat, cat sat, sat on, on the match; the mat does not → 4 of 5
    # 3-grams: the cat sat, cat sat on, sat on the match; on the mat does not → 3 of 4
    # 4-grams: the cat sat on, cat sat on the match; sat on the mat does not → 2 of 3
    counts, totals = [6, 4, 3, 2], [6, 5, 4, 3]
    brevity_penalty = math.exp(1 - 7 / 6)  # the hypothesis is shorter than the reference
    hand = 100 * math.exp(sum(math.log(c / t) for c, t in zip(counts, totals, strict=True)) / 4) * brevity_penalty
    result = metrics["sacrebleu"].compute(
        predictions=["the cat sat on the mat"], references=["the cat sat on the red mat"]
    )
    assert result["counts"] == counts
    assert result["totals"] == totals
    assert result["precisions"] == pytest.approx([100 * c / t for c, t in zip(counts, totals, strict=True)])
    assert (result["sys_len"], result["ref_len"]) == (6, 7)
    assert result["bp"] == pytest.approx(brevity_penalty)
    assert result["score"] == pytest.approx(hand)


def test_bleu_transposes_references_per_prediction(metrics):
    predictions = ["the cat sat on the mat", "a dog ran in the park"]
    # each prediction's first reference is itself; read as sacrebleu's streams the second would fail to match
    references = [["the cat sat on the mat", "x y z w"], ["a dog ran in the park", "q r s t"]]
    result = metrics["sacrebleu"].compute(predictions=predictions, references=references)
    assert result["score"] == pytest.approx(100.0)
    streams = [["the cat sat on the mat", "a dog ran in the park"], ["x y z w", "q r s t"]]
    assert result["score"] == pytest.approx(sacrebleu.corpus_bleu(predictions, streams).score)
    with pytest.raises(ValueError, match="same number of references"):
        metrics["sacrebleu"].compute(predictions=predictions, references=[["a", "b"], ["c"]])


# --------------------------------------------------------------------------- chrf

CHRF_PREDICTIONS = ["the cat sat on the mat", "a dog ran in a park"]
CHRF_REFERENCES = ["the cat sat on the red mat", "a dog ran in the park"]


def test_chrf_of_identical_strings_is_100(metrics):
    result = metrics["chrf"].compute(predictions=CHRF_REFERENCES, references=CHRF_REFERENCES)
    assert result == {"score": pytest.approx(100.0), "char_order": 6, "word_order": 0, "beta": 2}


def test_chrf_equals_sacrebleu(metrics):
    chrf = metrics["chrf"]
    result = chrf.compute(predictions=CHRF_PREDICTIONS, references=CHRF_REFERENCES)
    assert 0 < result["score"] < 100
    assert result["score"] == pytest.approx(sacrebleu.corpus_chrf(CHRF_PREDICTIONS, [CHRF_REFERENCES]).score)
    plus = chrf.compute(predictions=CHRF_PREDICTIONS, references=CHRF_REFERENCES, word_order=2)
    assert plus["word_order"] == 2
    assert plus["score"] == pytest.approx(
        sacrebleu.corpus_chrf(CHRF_PREDICTIONS, [CHRF_REFERENCES], word_order=2).score
    )
    assert plus["score"] != pytest.approx(result["score"])


def test_chrf_multi_reference(metrics):
    references = [[ref, "something else entirely"] for ref in CHRF_REFERENCES]
    result = metrics["chrf"].compute(predictions=CHRF_PREDICTIONS, references=references)
    streams = [CHRF_REFERENCES, ["something else entirely"] * 2]
    assert result["score"] == pytest.approx(sacrebleu.corpus_chrf(CHRF_PREDICTIONS, streams).score)


# --------------------------------------------------------------------------- exact_match


def test_exact_match_two_of_three(metrics):
    # " hello " matches after stripping; "The cat." differs in case and punctuation
    result = metrics["exact_match"].compute(
        predictions=["The cat.", "a dog", " hello "], references=["the cat", "a dog", "hello"]
    )
    assert set(result) == {"exact_match"}
    assert result["exact_match"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("options", "hand"),
    [
        ({}, 1 / 4),  # only "a dog" matches
        ({"ignore_case": True}, 2 / 4),  # + "YES"
        ({"ignore_punctuation": True}, 2 / 4),  # + "a dog ." once the "." and then the space are gone
        ({"ignore_case": True, "ignore_punctuation": True}, 4 / 4),  # + "The cat!", which needs both
    ],
)
def test_exact_match_options(metrics, options, hand):
    predictions = ["a dog", "YES", "a dog .", "The cat!"]
    references = ["a dog", "yes", "a dog", "the cat"]
    assert metrics["exact_match"].compute(predictions=predictions, references=references, **options) == {
        "exact_match": pytest.approx(hand)
    }
