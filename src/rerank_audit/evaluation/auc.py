"""The AUC of scores against a binary label, and its bootstrap over queries (clusters).

``roc_auc`` is the Mann–Whitney statistic: the share of (positive, negative) pairs in which
the positive scores higher, ties ½. Rows that share a query (its documents, its top and bottom
pair) are not independent draws, so the confidence interval resamples *queries* with
replacement and keeps all their rows: ``query_resample_weights`` says how often each row was
drawn in each resample, ``resampled_auc`` the AUC under those weights. Several score columns
of the same rows (the verdict with and without the explanation) share one set of resamples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rerank_audit.evaluation.summary import MISSING


def _wins(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[positives, negatives]: 1 where the positive scores higher, 1/2 for a tie, else 0."""
    positive, negative = scores[labels][:, None], scores[~labels][None, :]
    return (positive > negative) + 0.5 * (positive == negative)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (True: positive).

    The Mann–Whitney statistic over (positive, negative) pairs: the share the positive scores
    higher, ties counted 1/2. NaN when either class is absent.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(_wins(scores, labels).mean())


def query_resample_weights(query_ids, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[n_resamples, rows]: how often each row's query was drawn in each resample of the queries.

    Each resample draws as many queries as there are distinct ``query_ids``, with replacement
    (one multinomial draw per resample from ``rng``); a row weighs what its query drew.
    """
    codes, queries = pd.factorize(pd.Series(query_ids))
    draws = rng.multinomial(len(queries), np.full(len(queries), 1 / len(queries)), size=n_resamples)
    return draws[:, codes].astype(np.float64)


def resampled_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC under each row of pair ``weights`` [resamples, pairs] (how often each pair was drawn); NaN
    for a resample that drew one class only."""
    positive, negative = weights[:, labels], weights[:, ~labels]
    wins = ((positive @ _wins(scores, labels)) * negative).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return wins / (positive.sum(axis=1) * negative.sum(axis=1))


def interval_cell(row, name: str, digits: int = 2, sign: str = "") -> str:
    """A table cell "value [low, high]" of ``row[name]`` and its ``<name>_ci_low`` / ``<name>_ci_high``; "–" when NaN.

    ``sign``: "+" to sign the numbers (a difference)."""
    if pd.isna(row[name]):
        return MISSING
    return f"{row[name]:{sign}.{digits}f} [{row[f'{name}_ci_low']:{sign}.{digits}f}, {row[f'{name}_ci_high']:{sign}.{digits}f}]"
