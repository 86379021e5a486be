"""sacreBLEU as an `evaluate` metric module, shipped with tx and loaded by path (works offline).

References are given per prediction as a list (one or more reference translations each).
"""

import datasets
import evaluate
import sacrebleu as scb

_DESCRIPTION = "Corpus BLEU (Papineni et al., 2002) computed by sacreBLEU (Post, 2018): comparable scores."
_KWARGS = """
Args:
    predictions: list of translated texts.
    references: list of lists of reference translations (the same number of references each).
    smooth_method: 'none', 'floor', 'add-k' or 'exp' (default).
    smooth_value: value for 'floor' and 'add-k' smoothing.
    lowercase: compare lowercased texts.
    tokenize: sacreBLEU tokenizer name (default '13a').
    use_effective_order: ignore n-gram orders with no matches (for sentence-level scores).
Returns:
    score (0-100), counts, totals, precisions, bp, sys_len, ref_len.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Sacrebleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, Matt. A Call for Clarity in Reporting BLEU Scores. WMT 2018.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions, references, smooth_method="exp", smooth_value=None, lowercase=False,
                 tokenize=None, use_effective_order=False):
        counts = {len(refs) for refs in references}
        if len(counts) > 1:
            raise ValueError("every prediction needs the same number of references")
        n_refs = counts.pop() if counts else 1
        # sacreBLEU wants one stream per reference position, not one list per prediction
        streams = [[refs[i] for refs in references] for i in range(n_refs)]
        bleu = scb.BLEU(smooth_method=smooth_method, smooth_value=smooth_value, lowercase=lowercase,
                        tokenize=tokenize or "13a", effective_order=use_effective_order)
        out = bleu.corpus_score(predictions, streams)
        return {
            "score": out.score,
            "counts": out.counts,
            "totals": out.totals,
            "precisions": out.precisions,
            "bp": out.bp,
            "sys_len": out.sys_len,
            "ref_len": out.ref_len,
        }
