"""Mean squared error as an `evaluate` metric module, shipped with tx and loaded by path (offline)."""

import evaluate
import numpy as np

from tx.plugins.classification import metric_info

_DESCRIPTION = "Mean of the squared differences between predictions and references (regression)."
_KWARGS = """
Args:
    predictions: predicted values.
    references: true values.
    squared: return the MSE (default) or, with False, its square root (RMSE).
Returns:
    mse.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Mse(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS, self.config_name, value="float32")

    def _compute(self, predictions, references, squared=True):
        error = float(np.mean((np.asarray(predictions, dtype=float) - np.asarray(references, dtype=float)) ** 2))
        return {"mse": error if squared else error ** 0.5}
