"""Exact match and word-level F1 as an `evaluate` metric module, loaded by path (offline).

Word F1 compares the bag of lower-cased words of a prediction with its reference: precision
and recall of the shared words, averaged over examples. Replace it with your task's metric.
"""

import collections

import datasets
import evaluate

_DESCRIPTION = "Exact match and bag-of-words F1 between predicted and reference texts."
_KWARGS = """
Args:
    predictions: list of predicted texts.
    references: list of reference texts.
Returns:
    exact_match: fraction of predictions equal to their reference (after lower-casing and
        collapsing spaces), in [0, 1].
    word_f1: mean word-level F1, in [0, 1].
"""


def words(text):
    return text.lower().split()


def word_f1(prediction, reference):
    pred, ref = words(prediction), words(reference)
    if not pred and not ref:
        return 1.0
    shared = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(ref)
    return 2 * precision * recall / (precision + recall)


class WordF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        n = max(len(predictions), 1)
        exact = sum(words(p) == words(r) for p, r in zip(predictions, references))
        f1 = sum(word_f1(p, r) for p, r in zip(predictions, references))
        return {"exact_match": exact / n, "word_f1": f1 / n}
