"""Accuracy as an `evaluate` metric module, shipped with tx and loaded by path (works offline).

Config "multilabel": rows of 0/1 per label; a row counts as right only when all its labels are.
"""

import evaluate
import numpy as np

from tx.plugins.classification import metric_info

_DESCRIPTION = "Share of predictions equal to their reference (exact match of label sets for multilabel)."
_KWARGS = """
Args:
    predictions: predicted label ids (multilabel: rows of 0/1).
    references: true label ids (multilabel: rows of 0/1).
    normalize: return the share (default) instead of the count of right predictions.
Returns:
    accuracy.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Accuracy(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS, self.config_name)

    def _compute(self, predictions, references, normalize=True):
        right = np.asarray(predictions) == np.asarray(references)
        if right.ndim > 1:
            right = right.all(axis=1)
        return {"accuracy": float(right.mean() if normalize else right.sum())}
