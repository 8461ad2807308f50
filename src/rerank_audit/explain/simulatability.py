"""Counterfactual simulatability of word attributions: do they predict the score on edits they never saw?

Chen et al. (ICML 2024, arXiv 2307.08678) judge an explanation by what it lets one predict
about the model on counterfactual inputs. Here, per explained pair (q, d) with document-word
attributions a_1..a_n (``attribution.explain_pairs``), the held-out edits are

- ``edits`` random removals of document words: each a size s drawn uniformly from
  1..min(``max_words``, n), then s distinct positions, from a generator fixed by the seed
  and the pair's texts (``faithfulness`` seeds it with ``pair_seed``, in a stream apart from
  its random word sets), so a pair's edits never depend on what else is explained. Short
  documents may draw the same edit twice;
- on a known-answer control, one more edit where the document carries the ``marker``:
  every copy of the planted word removed.

Edits that *add* words are left out: an additive attribution has no value for a word that
is not in the document, so it predicts nothing for an addition.

The attributions predict an edit's score change additively, minus the sum of the removed
words' values: predicted(E) = -sum_{i in E} a_i; the measured change is
f(q, d without E) - f(q, d) (raw score units: both measures below are scale-free). Per pair:

- ``simulatability``: Spearman rank correlation of predicted and measured changes over the
  pair's edits (average ranks for ties); NaN when either vector is constant (e.g. a
  one-word document, whose every edit is the same) or holds a NaN;
- ``sign_agreement``: the share of edits whose predicted and measured changes have the same
  sign, zero being a sign of its own (a predicted "no change" agrees only with a score that
  did not move at all); NaN when a change is NaN or the pair has no edit.

Baseline (``_random``): the same two numbers with the pair's attributions permuted among its
document words, averaged over ``permutations`` seeded permutations (NaN ones left out). A
permutation keeps the values and the edit sizes, so where the attributions share a sign it
still predicts that larger removals move the score more; beating it takes knowing *which*
words matter.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_EDITS = 3  # a rank correlation over fewer points is +-1 or undefined


def held_out_edits(
    n_words: int, rng: np.random.Generator, *, edits: int, max_words: int, marker_positions: np.ndarray
) -> list[np.ndarray]:
    """The removed word positions of each edit: ``edits`` random sets, then ``marker_positions`` if any.

    Sizes are uniform on 1..min(max_words, n_words); a document without words gets no edit.
    """
    if n_words == 0:
        return []
    sizes = rng.integers(1, min(max_words, n_words) + 1, size=edits)
    removals = [np.sort(rng.choice(n_words, size=size, replace=False)) for size in sizes]
    return removals + ([np.asarray(marker_positions, dtype=np.int64)] if len(marker_positions) else [])


def predicted_changes(values: np.ndarray, removals: Sequence[np.ndarray]) -> np.ndarray:
    """The additive prediction of each edit's score change: minus the sum of its removed words' values."""
    return np.array([-values[removed].sum() for removed in removals], dtype=np.float64)


def agreement(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """(Spearman correlation, share of equal signs) of predicted and measured changes; see the module docstring for NaN."""
    predicted, measured = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if not len(predicted) or np.isnan(predicted).any() or np.isnan(measured).any():
        return float("nan"), float("nan")
    signs = float(np.mean(np.sign(predicted) == np.sign(measured)))
    if np.ptp(predicted) == 0 or np.ptp(measured) == 0:
        return float("nan"), signs
    from scipy.stats import rankdata  # here: the probe and rationale_metrics jobs import this module, never call this (~0.4 s each)

    return float(np.corrcoef(rankdata(predicted), rankdata(measured))[0, 1]), signs


def pair_simulatability(
    values: np.ndarray, removals: Sequence[np.ndarray], measured: np.ndarray, permutations: Sequence[np.ndarray]
) -> dict[str, float]:
    """simulatability, sign_agreement and their ``_random`` means of one pair: its attributions
    ``values`` (one per document word) against the ``measured`` change of each edit in
    ``removals``, and the same with the values reordered by each of ``permutations``."""
    simulatability, sign_agreement = agreement(predicted_changes(values, removals), measured)
    permuted = [agreement(predicted_changes(values[order], removals), measured) for order in permutations]
    return {
        "simulatability": simulatability,
        "simulatability_random": _mean_of_defined([rho for rho, _ in permuted]),
        "sign_agreement": sign_agreement,
        "sign_agreement_random": _mean_of_defined([signs for _, signs in permuted]),
    }


def _mean_of_defined(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN; NaN when none is."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")
