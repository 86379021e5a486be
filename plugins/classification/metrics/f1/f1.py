"""F1 as an `evaluate` metric module, shipped with tx and loaded by path (works offline).

Single-label ids or (config "multilabel") rows of 0/1 per label; binary, micro, macro or
weighted averaging over labels. A label with no true or predicted example scores 0.
"""

import evaluate
import numpy as np

from tx.plugins.classification import metric_info

_DESCRIPTION = "F1 = 2 * precision * recall / (precision + recall), averaged over labels."
_KWARGS = """
Args:
    predictions: predicted label ids (multilabel: rows of 0/1).
    references: true label ids (multilabel: rows of 0/1).
    average: 'binary' (F1 of pos_label), 'micro' (pooled counts), 'macro' (mean over labels)
        or 'weighted' (mean weighted by each label's true count).
    pos_label: the label scored by average='binary'.
    labels: which label ids to average over (single-label; default: all that occur).
Returns:
    f1.
"""


def _one_hot(ids, labels):
    return (np.asarray(ids)[:, None] == np.asarray(labels)[None, :]).astype(np.int64)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class F1(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS, self.config_name)

    def _compute(self, predictions, references, average="binary", pos_label=1, labels=None):
        preds, refs = np.asarray(predictions), np.asarray(references)
        if preds.ndim == 1:  # label ids -> one column per label
            if average == "binary":
                labels = [pos_label]
            elif labels is None:
                labels = sorted(set(preds.tolist()) | set(refs.tolist()))
            preds, refs = _one_hot(preds, labels), _one_hot(refs, labels)
        elif average == "binary":
            raise ValueError("average='binary' is for single-label data; use micro, macro or weighted")
        tp = (preds * refs).sum(axis=0)
        fp = (preds * (1 - refs)).sum(axis=0)
        fn = ((1 - preds) * refs).sum(axis=0)
        if average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        denominator = 2 * tp + fp + fn
        scores = np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp), dtype=float), where=denominator > 0)
        if average == "weighted":
            support = refs.sum(axis=0)
            return {"f1": float((scores * support).sum() / support.sum()) if support.sum() else 0.0}
        if average not in ("binary", "micro", "macro"):
            raise ValueError(f"unknown average {average!r}: use binary, micro, macro or weighted")
        return {"f1": float(np.mean(scores))}
