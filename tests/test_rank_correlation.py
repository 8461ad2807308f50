"""Spearman's ρ over a few methods: rows against scipy, the exact null by hand and by brute force, critical values from the published table."""

import itertools

import numpy as np
import pytest
from scipy import stats

from rerank_audit.evaluation.rank_correlation import detectable_rho, permutation_null, permutation_p, spearman_rows, spearman_test


def test_spearman_rows_match_scipy_with_ties():
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 4, (20, 7)).astype(float), rng.normal(size=(20, 7))
    expected = [stats.spearmanr(a, b).statistic for a, b in zip(x, y)]
    assert spearman_rows(x, y) == pytest.approx(expected)


def test_three_methods_allow_no_significant_rho():
    null = permutation_null([0, 1, 2], [0, 1, 2])
    # The 6 orders of 3 values: ρ = 1, 0.5, 0.5, -0.5, -0.5, -1 (by hand).
    assert sorted(null) == pytest.approx([-1, -0.5, -0.5, 0.5, 0.5, 1])
    assert permutation_p(1.0, null) == pytest.approx(2 / 6)
    assert np.isnan(detectable_rho(null, 0.05))


@pytest.mark.parametrize("n, critical", [(5, 1.0), (6, 0.886), (7, 0.786), (8, 0.738)])
def test_detectable_rho_is_the_published_critical_value(n, critical):
    # Two-sided alpha 0.05 critical values of Spearman's rank correlation (Zar, Biostatistical Analysis, table B.20).
    assert detectable_rho(permutation_null(range(n), range(n)), 0.05) == pytest.approx(critical, abs=5e-4)


def test_permutation_p_keeps_the_datas_ties():
    # Brute force with scipy over all 720 orders: |rho| >= 0.878 in 10% of them (an untied null would say 3.3%).
    x, y = np.arange(6.0), np.array([0.5, 0.5, 0.5, 1, 1, 1])
    rho = stats.spearmanr(x, y).statistic
    brute = np.mean([abs(stats.spearmanr(x, y[list(order)]).statistic) >= abs(rho) - 1e-12 for order in itertools.permutations(range(6))])
    assert brute == pytest.approx(0.1)
    assert permutation_p(rho, permutation_null(x, y)) == pytest.approx(brute)


def test_spearman_test_is_the_rho_and_p_of_the_null():
    # Four methods in the same order: rho 1, reached by 2 of the 4! = 24 orders (this one and its reverse).
    assert spearman_test([0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 5.0]) == pytest.approx((1.0, 2 / 24))


def test_the_two_sided_p_counts_both_tails_when_ties_make_the_null_asymmetric():
    # Ties in both measures: rho's null over the 720 orders is not symmetric about 0. Brute force with
    # scipy: |rho| >= 1 in 24 orders (the tied four among themselves); 2 x min(one-sided) would say 48/720.
    x = np.array([0.0, 0, 0, 0, 1, 2])
    brute = sum(abs(stats.spearmanr(x, x[list(order)]).statistic) >= 1 - 1e-12 for order in itertools.permutations(range(6)))
    assert brute == 24
    assert spearman_test(x, x) == pytest.approx((1.0, 24 / 720))


def test_beyond_eight_methods_the_monte_carlo_p_is_near_the_exact_one():
    # Nine methods, one swap at each end: the exact p by brute force over all 9! = 362,880 orders.
    x, y = np.arange(9.0), np.array([1.0, 0, 2, 3, 4, 5, 6, 8, 7])
    rho = 1 - 6 * 4 / (9 * 80)  # two adjacent swaps: sum of squared rank differences 4
    orders = np.array(list(itertools.permutations(range(9))))
    d = orders - np.arange(9)
    exact = np.mean(np.abs(1 - 6 * (d**2).sum(axis=1) / (9 * 80)) >= rho - 1e-12)
    observed, p = spearman_test(x, y)
    assert observed == pytest.approx(rho)
    assert p == pytest.approx(exact, abs=0.002)  # 100,000 random orders: SE about 0.0003
    assert p > 0
