"""ROUGE as an `evaluate` metric module, shipped with tx and loaded by path (works offline).

rougeLsum expects sentences separated by newlines; the task splits them before scoring.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer, scoring

_DESCRIPTION = "ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (Lin, 2004), via rouge_score."
_KWARGS = """
Args:
    predictions: list of generated texts.
    references: list of reference texts (or lists of references).
    rouge_types: which scores (default rouge1, rouge2, rougeL, rougeLsum).
    use_stemmer: Porter-stem words before matching.
    use_aggregator: return bootstrap-aggregated mid F-measures (default) instead of per-example lists.
Returns:
    A dict rouge type -> F-measure in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, Chin-Yew. ROUGE: a package for automatic evaluation of summaries. 2004.",
            inputs_description=_KWARGS,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=False, use_aggregator=True):
        rouge_types = rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
        aggregator = scoring.BootstrapAggregator() if use_aggregator else None
        per_example = {t: [] for t in rouge_types}
        for prediction, reference in zip(predictions, references):
            if isinstance(reference, list):
                score = scorer.score_multi(reference, prediction)
            else:
                score = scorer.score(reference, prediction)
            if aggregator is not None:
                aggregator.add_scores(score)
            else:
                for t in rouge_types:
                    per_example[t].append(score[t].fmeasure)
        if aggregator is None:
            return per_example
        result = aggregator.aggregate()
        return {t: result[t].mid.fmeasure for t in rouge_types}
