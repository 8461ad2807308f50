"""Spearman's ρ across a handful of units (the methods of one study), with an exact permutation p.

With 3–8 methods the t approximation of ρ's p is poor, so the null is every order of one
measure against the other (Monte Carlo beyond 8), keeping the data's own ties; the two-sided p
is the share of that null at least as far from 0 (with ties in both measures the null is not
symmetric, and this is not 2 × the smaller one-sided p). The same null gives the *detectable* ρ: the
smallest |ρ| the test can call significant with n units, the effect a "no correlation" could
have found (none with 3 units: the smallest p is 2/3! = 1/3).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

EXACT_PERMUTATIONS_UP_TO = 8  # 8! = 40,320 orders; more methods: Monte Carlo
MONTE_CARLO_PERMUTATIONS = 100_000
# permutation_p tells an exact null from a Monte Carlo one by its length.
assert MONTE_CARLO_PERMUTATIONS > math.factorial(EXACT_PERMUTATIONS_UP_TO)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row of ``x`` with the same row of ``y`` ([rows, n]; average ranks for ties)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)
    rx, ry = rx - rx.mean(axis=-1, keepdims=True), ry - ry.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=-1) / np.sqrt((rx**2).sum(axis=-1) * (ry**2).sum(axis=-1))


def permutation_null(x, y, seed: int = 0) -> np.ndarray:
    """Spearman's ρ of ``x`` against every order of ``y`` (n ≤ EXACT_PERMUTATIONS_UP_TO), else against
    MONTE_CARLO_PERMUTATIONS random orders: the null distribution of ρ with the data's own ties."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(y) <= EXACT_PERMUTATIONS_UP_TO:
        orders = np.array(list(itertools.permutations(range(len(y)))))
    else:
        orders = np.argsort(np.random.default_rng(seed).random((MONTE_CARLO_PERMUTATIONS, len(y))), axis=1)
    return spearman_rows(np.broadcast_to(x, orders.shape), y[orders])


def permutation_p(rho: float, null: np.ndarray) -> float:
    """Two-sided p of ``rho``: the share of the null at least as far from 0 (a small tolerance for float
    ties); a Monte Carlo null counts the observed order too, so p is never 0."""
    if not np.isfinite(rho):
        return float("nan")
    extreme = int(np.sum(np.abs(null) >= abs(rho) - 1e-12))
    return extreme / len(null) if len(null) <= math.factorial(EXACT_PERMUTATIONS_UP_TO) else (1 + extreme) / (1 + len(null))


def detectable_rho(null: np.ndarray, alpha: float) -> float:
    """The smallest |ρ| whose two-sided permutation p is ≤ alpha (NaN when none is: too few methods)."""
    values = np.unique(np.round(np.abs(null), 12))
    significant = [v for v in values if permutation_p(v, null) <= alpha]
    return float(min(significant)) if significant else float("nan")


def spearman_test(x, y, seed: int = 0) -> tuple[float, float]:
    """(Spearman's ρ, its two-sided permutation p) of ``x`` against ``y``."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rho = float(spearman_rows(x, y))
    return rho, permutation_p(rho, permutation_null(x, y, seed))
