"""Bootstrap CIs, paired t-tests, Holm and compare_methods equal hand-computed arithmetic."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from rerank_audit.evaluation.statistics import (
    bootstrap_ci,
    cohens_dz,
    compare_methods,
    compare_with_random,
    explain_per_query,
    holm,
    holm_levels,
    minimal_detectable_effect,
    paired_t_test,
    tost_paired,
)
from rerank_audit.evaluation.summary import summary_markdown

# Per-query differences [0.1, 0.2, 0.0, 0.3]: mean 0.15, squared deviations
# 0.0025 + 0.0025 + 0.0225 + 0.0225 = 0.05, sample variance 0.05 / 3.
BM25 = [0.4, 0.3, 0.5, 0.2]
SFT = [0.5, 0.5, 0.5, 0.5]
SD = math.sqrt(0.05 / 3)
T = 0.15 / (SD / math.sqrt(4))


def student_t3_two_sided_p(t: float) -> float:
    """Two-sided p of Student's t with 3 degrees of freedom, from its closed-form CDF."""
    x = abs(t) / math.sqrt(3)
    cdf = 0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi
    return 2 * (1 - cdf)


def plain_percentile_bootstrap(values, n_resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """A percentile bootstrap written apart from ``bootstrap_ci``, after its documented convention:
    ``n_resamples`` rows of len(values) indices drawn at once by ``default_rng(seed).integers``, the mean of
    each row, and the quantiles interpolated linearly between the sorted means (position q (n - 1))."""
    rows = np.random.default_rng(seed).integers(0, len(values), size=(n_resamples, len(values))).tolist()
    means = sorted(sum(values[i] for i in row) / len(values) for row in rows)

    def quantile(q: float) -> float:
        position = q * (len(means) - 1)
        below = math.floor(position)
        above = min(below + 1, len(means) - 1)
        return means[below] + (position - below) * (means[above] - means[below])

    return quantile((1 - confidence) / 2), quantile((1 + confidence) / 2)


def test_paired_t_test_equals_the_formula():
    t, p = paired_t_test(SFT, BM25)
    assert t == pytest.approx(T)  # 2.3238
    assert p == pytest.approx(student_t3_two_sided_p(T))  # 0.1029
    assert paired_t_test(BM25, SFT) == pytest.approx((-T, student_t3_two_sided_p(T)))


def test_paired_t_test_aligns_series_by_query_id():
    a = pd.Series(SFT, index=["q1", "q2", "q3", "q4"])
    b = pd.Series(BM25[::-1] + [9.0], index=["q4", "q3", "q2", "q1", "q9"])
    assert paired_t_test(a, b) == pytest.approx((T, student_t3_two_sided_p(T)))


def test_zero_variance_identical_values_give_p_one_and_a_constant_shift_p_zero():
    assert paired_t_test(BM25, BM25) == (0.0, 1.0)
    assert paired_t_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == (math.inf, 0.0)
    assert cohens_dz(BM25, BM25) == 0.0
    assert all(math.isnan(v) for v in paired_t_test([1.0], [0.0]))


def test_cohens_dz_is_mean_difference_over_sd_of_differences():
    assert cohens_dz(SFT, BM25) == pytest.approx(0.15 / SD)


def test_holm_steps_down_stays_monotone_and_caps_at_one():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adjusted = holm([0.02, np.nan, 0.01])  # NaN: not tested, not counted in m = 2
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.02])
    assert math.isnan(adjusted[1])


def test_holm_levels_are_alpha_over_the_tests_left_at_each_step():
    # ranked by raw p: 0.01 (i = 1 of m = 3) -> 0.05 / 3, 0.03 (i = 2) -> 0.05 / 2, 0.04 (i = 3) -> 0.05
    assert holm_levels([0.01, 0.04, 0.03], 0.05) == pytest.approx([0.05 / 3, 0.05, 0.05 / 2])
    levels = holm_levels([0.02, np.nan, 0.01], 0.05)  # NaN: not tested, not counted in m = 2
    assert levels[[0, 2]] == pytest.approx([0.05, 0.025]) and math.isnan(levels[1])


def test_minimal_detectable_effect_matches_the_hand_computed_approximations():
    """sd 0.2 over n = 16 pairs at alpha 0.05, power 0.8: sd / sqrt(n) = 0.2 / 4 = 0.05.

    Normal approximation: (z_0.975 + z_0.80) sd / sqrt(n) = (1.959964 + 0.841621) * 0.05
    = 2.801585 * 0.05 = 0.140079. t correction, quantiles of Student's t with n - 1 = 15
    degrees of freedom: (t_0.975,15 + t_0.80,15) * 0.05 = (2.131450 + 0.866245) * 0.05
    = 2.997695 * 0.05 = 0.149885. The exact noncentral-t effect lies above the normal
    approximation (it ignores that sd is estimated) and, at 15 degrees of freedom, within
    0.1% of the t-corrected one.
    """
    mde = minimal_detectable_effect(0.2, 16, 0.05, power=0.8)
    assert mde == pytest.approx(0.149885, rel=1e-3)
    assert mde > 0.140079 * 1.05
    assert minimal_detectable_effect(0.4, 16, 0.05) == pytest.approx(2 * mde)  # linear in sd; power 0.8 by default


def test_minimal_detectable_effect_shrinks_with_pairs_and_grows_with_stringency():
    by_n = [minimal_detectable_effect(1.0, n, 0.05) for n in (2, 3, 5, 10, 50, 200)]
    assert all(a > b for a, b in zip(by_n, by_n[1:]))
    by_alpha = [minimal_detectable_effect(1.0, 20, a) for a in (0.1, 0.05, 0.01, 0.05 / 96)]
    assert all(a < b for a, b in zip(by_alpha, by_alpha[1:]))
    by_power = [minimal_detectable_effect(1.0, 20, 0.05, power=p) for p in (0.5, 0.8, 0.9, 0.99)]
    assert all(a < b for a, b in zip(by_power, by_power[1:]))
    assert math.isnan(minimal_detectable_effect(1.0, 1, 0.05)) and math.isnan(minimal_detectable_effect(float("nan"), 10, 0.05))
    assert minimal_detectable_effect(0.0, 10, 0.05) == 0.0  # no variance: any shift is rejected


def test_tost_shows_equivalence_within_the_margin_and_not_outside_it():
    # Differences SFT - BM25 = [0.1, 0.2, 0.0, 0.3]: mean 0.15, se = sqrt(0.05 / 3) / 2 = 1 / sqrt(240).
    # Margin 0.4: t_lower = (0.15 + 0.4) sqrt(240) = 8.5206, t_upper = (0.15 - 0.4) sqrt(240) = -sqrt(15)
    # = -3.8730 on 3 degrees of freedom. One-sided p's from t's closed-form CDF with 3 df,
    # 1/2 + (x / (1 + x^2) + atan x) / pi with x = |t| / sqrt(3): p_lower = 0.001698 and, with
    # x = sqrt(5), p_upper = 1/2 - (sqrt(5) / 6 + 1.150262) / pi = 0.015233. TOST p is the larger.
    p, equivalent = tost_paired(SFT, BM25, margin=0.4, alpha=0.05)
    assert p == pytest.approx(student_t3_two_sided_p(math.sqrt(15)) / 2) and p == pytest.approx(0.015233, abs=1e-6)
    assert equivalent
    # Margin 0.05, below the mean difference: t_upper = 0.10 sqrt(240) = 1.5492, p_upper = 1 - p_one_sided(1.5492) = 0.8904.
    p, equivalent = tost_paired(SFT, BM25, margin=0.05, alpha=0.05)
    assert p == pytest.approx(1 - student_t3_two_sided_p(0.10 * math.sqrt(240)) / 2) and p == pytest.approx(0.8904, abs=1e-4)
    assert not equivalent
    assert tost_paired(BM25, BM25, margin=0.01, alpha=0.05) == (0.0, True)  # identical: no variance, inside any margin
    assert math.isnan(tost_paired([1.0], [0.0], margin=0.5, alpha=0.05)[0])
    with pytest.raises(ValueError, match="margin"):
        tost_paired(SFT, BM25, margin=0.0, alpha=0.05)


def test_bootstrap_ci_contains_the_mean_narrows_with_n_and_is_seeded():
    rng = np.random.default_rng(7)
    small, large = rng.normal(0.5, 0.2, 20), rng.normal(0.5, 0.2, 2000)
    low_small, high_small = bootstrap_ci(small, n_resamples=2000, confidence=0.95, seed=1)
    low_large, high_large = bootstrap_ci(large, n_resamples=2000, confidence=0.95, seed=1)
    assert low_small < small.mean() < high_small
    assert low_large < large.mean() < high_large
    assert high_large - low_large < (high_small - low_small) / 5  # width ~ 1 / sqrt(n): 10x narrower
    assert bootstrap_ci(small, 2000, 0.95, seed=1) == (low_small, high_small)
    assert (low_small, high_small) == pytest.approx(plain_percentile_bootstrap(small.tolist(), 2000, 0.95, seed=1), abs=1e-12)
    assert bootstrap_ci([0.3], 100, 0.95, 0) == (0.3, 0.3)


def test_bootstrap_ci_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, float("nan")], 100, 0.95, 0)


def per_query_table(rows):
    return pd.DataFrame(rows, columns=["dataset", "method", "budget", "split", "query_id", "measure", "value"])


def tiny_per_query():
    """bm25 and zeroshot (budget 0), sft (budget 10) on four test queries, two measures.

    sft - bm25: nDCG@10 [0.1, 0.2, 0.0, 0.3]; AP [0.1, 0.1, 0.3, 0.3] (mean 0.2, variance 0.04 / 3).
    zeroshot equals bm25 on nDCG@10 and misses q4 on AP.
    """
    queries = ["q1", "q2", "q3", "q4"]
    rows = []
    for q, bm25, sft in zip(queries, BM25, SFT):
        rows.append(("toy", "bm25", "0", "test", q, "nDCG@10", bm25))
        rows.append(("toy", "bm25", "0", "all", q, "nDCG@10", 0.0))  # other split: ignored
        rows.append(("toy", "zeroshot", "0", "test", q, "nDCG@10", bm25))
        rows.append(("toy", "sft", "10", "test", q, "nDCG@10", sft))
    for q, bm25, diff in zip(queries, [0.3, 0.3, 0.3, 0.3], [0.1, 0.1, 0.3, 0.3]):
        rows.append(("toy", "bm25", "0", "test", q, "AP", bm25))
        rows.append(("toy", "sft", "10", "test", q, "AP", bm25 + diff))
        if q != "q4":
            rows.append(("toy", "zeroshot", "0", "test", q, "AP", 0.5))
    return per_query_table(rows)


def test_compare_methods_rows_equal_hand_computation():
    stats = compare_methods(tiny_per_query(), measures=["nDCG@10", "AP"], untrained={"sft": "zeroshot"}, n_resamples=500, seed=3)
    assert list(zip(stats.budget, stats.method, stats.measure)) == [
        ("0", "bm25", "nDCG@10"), ("0", "bm25", "AP"),
        ("0", "zeroshot", "nDCG@10"), ("0", "zeroshot", "AP"),
        ("10", "sft", "nDCG@10"), ("10", "sft", "AP"),
    ]  # fmt: skip
    row = stats.set_index(["method", "measure"])

    sft = row.loc[("sft", "nDCG@10")]
    assert (sft.queries, sft["mean"]) == (4, pytest.approx(0.5))
    assert (sft.ci_low, sft.ci_high) == (0.5, 0.5)  # every resample of four 0.5s has mean 0.5
    p_ndcg = student_t3_two_sided_p(T)
    t_ap = 0.2 / (math.sqrt(0.04 / 3) / 2)
    p_ap = student_t3_two_sided_p(t_ap)
    assert (sft.bm25_queries, sft.bm25_diff, sft.bm25_t, sft.bm25_p) == (4, pytest.approx(0.15), pytest.approx(T), pytest.approx(p_ndcg))
    assert sft.bm25_dz == pytest.approx(0.15 / SD)
    # sft vs zeroshot: zeroshot equals bm25 on nDCG@10; on AP it lacks q4, so 3 pairs with
    # differences [-0.1, -0.1, 0.1]: t = -0.5 on 2 degrees of freedom, p = 1 - 0.5 / sqrt(2.25).
    assert sft.untrained_p == pytest.approx(p_ndcg)
    ap = row.loc[("sft", "AP")]
    assert ap.untrained_queries == 3
    assert ap.untrained_diff == pytest.approx((0.4 + 0.4 + 0.6) / 3 - 0.5)
    assert (ap.untrained_t, ap.untrained_p) == (pytest.approx(-0.5), pytest.approx(2 / 3))
    # One Holm family at budget 10: sft x {nDCG@10, AP} x {bm25, untrained (zeroshot)}, m = 4; sorted p:
    # p_ap (0.040), p_ndcg (0.103) twice, 2/3 -> 4 p_ap, 3 p_ndcg, 3 p_ndcg (monotone), 2/3.
    assert ap.bm25_p_holm == pytest.approx(4 * p_ap)
    assert sft.bm25_p_holm == pytest.approx(3 * p_ndcg) and sft.untrained_p_holm == pytest.approx(3 * p_ndcg)
    assert ap.untrained_p_holm == pytest.approx(2 / 3)
    assert not ap.bm25_significant and not sft.bm25_significant  # 4 p_ap = 0.16

    zeroshot = row.loc[("zeroshot", "nDCG@10")]
    assert (zeroshot.bm25_t, zeroshot.bm25_p, zeroshot.bm25_p_holm) == (0.0, 1.0, 1.0)
    assert pd.isna(zeroshot.untrained_p) and pd.isna(zeroshot.untrained_significant) and pd.isna(zeroshot.untrained_method)
    assert sft.untrained_method == "zeroshot"
    bm25 = row.loc[("bm25", "nDCG@10")]
    assert bm25["mean"] == pytest.approx(0.35)  # the "all" split's zeros are not used
    # The interval of BM25 = [0.4, 0.3, 0.5, 0.2] (the test split's values, 500 resamples, seed 3, 95%):
    # the second resampler's, and near the exact bootstrap quantiles of the 4^4 equally likely resamples
    # (their means, by hand: cumulative share 0.0195 up to 0.225, 0.0586 up to 0.25, so the 2.5% quantile is
    # 0.25; 0.9414 up to 0.425, 0.9805 up to 0.45, so the 97.5% quantile is 0.45; one grid step is 0.025).
    assert (bm25.ci_low, bm25.ci_high) == pytest.approx(plain_percentile_bootstrap(BM25, 500, 0.95, seed=3), abs=1e-12)
    assert bm25.ci_low == pytest.approx(0.25, abs=0.025) and bm25.ci_high == pytest.approx(0.45, abs=0.025)
    assert pd.isna(bm25.bm25_p) and pd.isna(bm25.untrained_p) and pd.isna(bm25.bm25_significant)


def test_a_rows_mde_is_the_detectable_effect_of_its_own_differences_at_its_holm_level():
    stats = compare_methods(tiny_per_query(), measures=["nDCG@10", "AP"], untrained={"sft": "zeroshot"}, n_resamples=50)
    row = stats.set_index(["method", "measure"])
    sft, ap = row.loc[("sft", "nDCG@10")], row.loc[("sft", "AP")]
    # Budget 10's family, m = 4, ranked by raw p (see the hand computation above): AP vs bm25
    # (i = 1, alpha / 4), nDCG@10 vs bm25 and vs zeroshot (tied, i = 2 and 3: alpha / 3 and
    # alpha / 2), AP vs zeroshot (i = 4, alpha). Differences: AP vs bm25 [0.1, 0.1, 0.3, 0.3],
    # sd sqrt(0.04 / 3); nDCG@10 [0.1, 0.2, 0.0, 0.3], sd SD; AP vs zeroshot [-0.1, -0.1, 0.1], sd sqrt(0.04 / 3).
    assert ap.bm25_mde == pytest.approx(minimal_detectable_effect(math.sqrt(0.04 / 3), 4, 0.05 / 4, power=0.8))
    assert sorted([sft.bm25_mde, sft.untrained_mde]) == pytest.approx(
        [minimal_detectable_effect(SD, 4, 0.05 / 2), minimal_detectable_effect(SD, 4, 0.05 / 3)]
    )
    assert ap.untrained_mde == pytest.approx(minimal_detectable_effect(math.sqrt(0.04 / 3), 3, 0.05))
    # Budget 0: zeroshot vs bm25 on both measures (AP: 3 pairs); nDCG@10's differences are all 0.
    assert row.loc[("zeroshot", "nDCG@10"), "bm25_mde"] == 0.0
    assert row.loc[("bm25", "nDCG@10")].filter(like="_mde").isna().all() and pd.isna(sft.random_mde)  # untested


def test_holm_family_is_primary_measures_x_methods_x_comparisons_and_other_measures_are_untested():
    # random, bm25 (budget 0) and sft (budget 10) on four queries; nDCG@10 is primary, R@20
    # is reported only (sft and bm25 equal on it by construction, as with depth 20 < 20).
    random = [0.2, 0.1, 0.3, 0.2]
    rows = []
    for q, r, b, s in zip(["q1", "q2", "q3", "q4"], random, BM25, SFT):
        for method, budget, value in [("random", "0", r), ("bm25", "0", b), ("sft", "10", s)]:
            rows.append(("toy", method, budget, "test", q, "nDCG@10", value))
            rows.append(("toy", method, budget, "test", q, "R@20", 0.5 if method == "random" else 1.0))
    stats = compare_methods(per_query_table(rows), measures=["nDCG@10", "R@20"], primary=["nDCG@10"], n_resamples=100)
    row = stats.set_index(["method", "measure"])
    # sft - random: [0.3, 0.4, 0.2, 0.3], mean 0.3, sample variance 0.02 / 3.
    t_random = 0.3 / (math.sqrt(0.02 / 3) / 2)
    p_random, p_bm25 = student_t3_two_sided_p(t_random), student_t3_two_sided_p(T)
    sft = row.loc[("sft", "nDCG@10")]
    assert (sft.random_t, sft.random_p) == (pytest.approx(t_random), pytest.approx(p_random))
    # Budget 10's family: sft x nDCG@10 x {random, bm25}, m = 2 (R@20 is not in it).
    assert sft.random_p_holm == pytest.approx(2 * p_random)
    assert sft.bm25_p_holm == pytest.approx(max(2 * p_random, p_bm25))
    assert sft.random_significant and not sft.bm25_significant
    # Budget 0's family: bm25 - random = [0.2, 0.2, 0.2, 0.0], t = 0.15 / (0.1 / 2) = 3, m = 1.
    bm25 = row.loc[("bm25", "nDCG@10")]
    assert bm25.random_p == pytest.approx(student_t3_two_sided_p(3.0)) and bm25.random_p_holm == bm25.random_p
    assert pd.isna(row.loc[("random", "nDCG@10")].bm25_p)  # a baseline is not tested against later ones
    # R@20 has means and CIs but no test and no significance flag.
    r20 = stats[stats.measure == "R@20"]
    assert r20.filter(regex="_(p|p_holm|t)$").isna().all().all() and r20.filter(like="_significant").isna().all().all()
    assert row.loc[("sft", "R@20"), "mean"] == 1.0
    with pytest.raises(ValueError, match="primary measures .'AP'. are not among"):
        compare_methods(per_query_table(rows), measures=["nDCG@10"], primary=["AP"], n_resamples=100)


def test_trained_methods_are_compared_with_their_own_untrained_counterpart():
    # qlm_sft - qlm = [0.1, 0.1, 0.3, 0.3] (mean 0.2, variance 0.04 / 3); sft - zeroshot = [0.1, 0.2, 0.0, 0.3].
    # zeroshot and qlm are untrained: compared with bm25 only. A wrong pairing (qlm_sft vs
    # zeroshot) would give the differences [0.5, 0.5, 0.5, 0.5]: t infinite.
    rows = []
    for q, z, s_, ql, qs in zip(["q1", "q2", "q3", "q4"], BM25, SFT, [0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.4, 0.4]):
        for method, budget, value in [("bm25", "0", z), ("zeroshot", "0", z), ("qlm", "0", ql), ("sft", "10", s_), ("qlm_sft", "10", qs)]:
            rows.append(("toy", method, budget, "test", q, "nDCG@10", value))
    stats = compare_methods(per_query_table(rows), untrained={"sft": "zeroshot", "qlm_sft": "qlm"}, n_resamples=50)
    row = stats.set_index("method")
    assert row.loc["qlm_sft", "untrained_method"] == "qlm" and row.loc["qlm_sft", "untrained_diff"] == pytest.approx(0.2)
    assert row.loc["qlm_sft", "untrained_t"] == pytest.approx(0.2 / (math.sqrt(0.04 / 3) / 2))
    assert row.loc["sft", "untrained_diff"] == pytest.approx(0.15) and row.loc["sft", "untrained_t"] == pytest.approx(T)
    assert row.loc[["zeroshot", "qlm", "bm25"], "untrained_p"].isna().all()
    # Budget 0's family: zeroshot and qlm against bm25 (random is absent), m = 2.
    assert row.loc["qlm", "bm25_p_holm"] == pytest.approx(min(1.0, 2 * row.loc["qlm", "bm25_p"]))
    findings = summary_markdown(stats, methods=["zeroshot", "qlm", "sft", "qlm_sft"]).split("**Findings.**")[1]
    # Each "no significant change" carries the effect its test could have found.
    for method, text in (("sft", "sft (vs zero-shot, +0.150"), ("qlm_sft", "qlm_sft (vs qlm, +0.200")):
        assert f"{text}; detectable: ±{row.loc[method, 'untrained_mde']:.3f})" in findings
    assert "qlm (vs" not in findings and "zero-shot (vs" not in findings
    assert row.untrained_tost_p.isna().all()  # no margin: no equivalence test


def test_equivalence_is_tested_within_the_configured_margin():
    # qlm_sft - qlm = [0.1, 0.1, 0.3, 0.3]: mean 0.2, se = sqrt(0.04 / 3) / 2. Within +-0.5 the
    # two one-sided t statistics are (0.2 + 0.5) / se and (0.2 - 0.5) / se, 3 degrees of freedom.
    rows = []
    for q, z, s_, ql, qs in zip(["q1", "q2", "q3", "q4"], BM25, SFT, [0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.4, 0.4]):
        for method, budget, value in [("bm25", "0", z), ("zeroshot", "0", z), ("qlm", "0", ql), ("sft", "10", s_), ("qlm_sft", "10", qs)]:
            rows.append(("toy", method, budget, "test", q, "nDCG@10", value))
    untrained = {"sft": "zeroshot", "qlm_sft": "qlm"}
    se = math.sqrt(0.04 / 3) / 2
    expected = max(scipy_stats.t.sf(0.7 / se, 3), scipy_stats.t.cdf(-0.3 / se, 3))
    wide = compare_methods(per_query_table(rows), untrained=untrained, n_resamples=50, equivalence_margin=0.5).set_index("method")
    assert wide.loc["qlm_sft", "untrained_tost_p"] == pytest.approx(expected)
    # Holm over the budget's four TOSTs (sft and qlm_sft, each vs bm25 and vs its untrained model).
    assert wide.loc["qlm_sft", "untrained_tost_p_holm"] >= wide.loc["qlm_sft", "untrained_tost_p"]
    assert wide.loc["qlm_sft", "untrained_tost_p_holm"] <= min(1.0, 4 * expected)
    narrow = compare_methods(per_query_table(rows), untrained=untrained, n_resamples=50, equivalence_margin=0.05).set_index("method")
    assert not narrow.loc["qlm_sft", "untrained_equivalent"]  # a mean of 0.2 is not within +-0.05
    assert pd.isna(narrow.loc["qlm", "untrained_equivalent"])  # untrained: no such comparison
    findings = summary_markdown(narrow.reset_index(), methods=["zeroshot", "qlm", "sft", "qlm_sft"]).split("**Findings.**")[1]
    assert "qlm_sft (vs qlm, +0.200; detectable: ±" in findings and "; not shown equivalent)" in findings


def test_compare_methods_rejects_repeated_queries_and_unknown_measures():
    table = tiny_per_query()
    with pytest.raises(ValueError, match="repeated"):
        compare_methods(pd.concat([table, table.iloc[:1]]), n_resamples=10)
    with pytest.raises(ValueError, match="RR@10"):
        compare_methods(table, measures=["RR@10"], n_resamples=10)


def test_explain_per_query_averages_documents_and_names_measures_by_k():
    faithfulness = pd.DataFrame(
        {
            "method": "sft", "budget": "10", "query_id": ["q1", "q1", "q1", "q1"], "doc_id": ["a", "a", "b", "b"],
            "k": [1, 5, 1, 5], "comprehensiveness": [0.2, 0.4, 0.6, 0.8], "sufficiency": 0.1,
            "comprehensiveness_random": 0.1, "sufficiency_random": 0.3, "deletion_auc": [0.5, 0.5, 0.7, 0.7],
            "deletion_auc_random": 0.2, "lexical_shortcut": [1.0, 1.0, np.nan, np.nan],
        }
    )  # fmt: skip
    rationales = pd.DataFrame(
        {"method": "sft", "budget": "10", "query_id": "q1", "doc_id": ["a", "b"], "keyword_coverage": [0.5, 1.0],
         "verdict_agreement": [1.0, 0.0], "unsupported_rate": [0.0, 0.2]}
    )  # fmt: skip
    table = explain_per_query(faithfulness, rationales, "toy")
    values = dict(zip(table.measure, table.value))
    assert values["comprehensiveness@1"] == pytest.approx(0.4)
    assert values["comprehensiveness@5"] == pytest.approx(0.6)
    assert values["deletion_auc"] == pytest.approx(0.6)  # per pair once, not once per k
    assert values["lexical_shortcut"] == pytest.approx(1.0)  # NaN pair left out
    assert values["verdict_agreement"] == pytest.approx(0.5)
    assert set(table.split) == {"test"} and set(table.dataset) == {"toy"}


def test_compare_with_random_marks_attributions_that_beat_random_words():
    rows = []
    for q, actual, random in zip(["q1", "q2", "q3", "q4"], [0.5, 0.6, 0.4, 0.7], [0.4, 0.4, 0.4, 0.4]):
        rows.append(("toy", "sft", "10", "test", q, "comprehensiveness@5", actual))
        rows.append(("toy", "sft", "10", "test", q, "comprehensiveness_random@5", random))
    tests = compare_with_random(per_query_table(rows), k=5)
    assert len(tests) == 1
    test = tests.iloc[0]
    assert (test["diff"], test.t, test.p) == (pytest.approx(0.15), pytest.approx(T), pytest.approx(student_t3_two_sided_p(T)))
    assert test.p_holm == pytest.approx(test.p)  # one test in the family
    assert test.mde == pytest.approx(minimal_detectable_effect(SD, 4, 0.05))  # differences [0.1, 0.2, 0.0, 0.3], level alpha
    assert not test.faithful  # p = 0.10: not significant at 0.05


def test_rationale_comprehensiveness_is_tested_against_random_words_in_the_same_family():
    rows = []
    for q, actual, stated in zip(["q1", "q2", "q3", "q4"], [0.5, 0.6, 0.4, 0.7], [1.1, 1.2, 1.1, 1.2]):
        rows.append(("toy", "sft", "10", "test", q, "comprehensiveness@5", actual))
        rows.append(("toy", "sft", "10", "test", q, "comprehensiveness_random@5", 0.4))
        rows.append(("toy", "sft", "10", "test", q, "rationale_comprehensiveness", stated))
        rows.append(("toy", "sft", "10", "test", q, "rationale_comprehensiveness_random", 1.0))
        # dpo's stated words move the score less than random ones, by the same margins
        rows.append(("toy", "dpo", "10", "test", q, "rationale_comprehensiveness", 2.0 - stated))
        rows.append(("toy", "dpo", "10", "test", q, "rationale_comprehensiveness_random", 1.0))
    tests = compare_with_random(per_query_table(rows), k=5).set_index(["method", "measure"])
    assert set(tests.index) == {("sft", "comprehensiveness@5"), ("sft", "rationale_comprehensiveness"), ("dpo", "rationale_comprehensiveness")}
    # Differences 0.1, 0.2, 0.1, 0.2: mean 0.15, SD 0.1/sqrt(3), t = 3 sqrt(3).
    t = 3 * math.sqrt(3)
    stated, unstated = tests.loc[("sft", "rationale_comprehensiveness")], tests.loc[("dpo", "rationale_comprehensiveness")]
    assert (stated["diff"], stated.t, stated.random_mean) == (pytest.approx(0.15), pytest.approx(t), pytest.approx(1.0))
    assert (unstated["diff"], unstated.t) == (pytest.approx(-0.15), pytest.approx(-t))
    # Holm over the three tests of the budget: p(t) = 0.0139 twice, then comprehensiveness's 0.10.
    p = student_t3_two_sided_p(t)
    assert tests.p_holm.to_dict() == pytest.approx({
        ("sft", "comprehensiveness@5"): student_t3_two_sided_p(T),
        ("sft", "rationale_comprehensiveness"): 3 * p,
        ("dpo", "rationale_comprehensiveness"): 3 * p,
    })  # fmt: skip
    assert stated.faithful and unstated.significant and not unstated.faithful  # below random is significant, not faithful
    # Holm levels: the two rationale tests (tied) alpha / 3 and alpha / 2, comprehensiveness@5 (largest p) alpha.
    sd = 0.1 / math.sqrt(3)
    assert sorted([stated.mde, unstated.mde]) == pytest.approx([minimal_detectable_effect(sd, 4, a) for a in (0.05 / 2, 0.05 / 3)])
    assert tests.loc[("sft", "comprehensiveness@5"), "mde"] == pytest.approx(minimal_detectable_effect(SD, 4, 0.05))


def _top_table(qlm):
    """bm25 and qlm (budget 0) and sft (budget 10) on four queries: nDCG@10, and comprehensiveness@1 for the explained two."""
    rows = []
    for i, q in enumerate(["q1", "q2", "q3", "q4"]):
        for method, budget, value in [("bm25", "0", [0.4, 0.5, 0.6, 0.5][i]), ("qlm", "0", qlm[i]), ("sft", "10", [0.9, 0.8, 0.9, 0.8][i])]:
            rows.append(("toy", method, budget, "test", q, "nDCG@10", value))
    explain = [("toy", m, b, "test", q, "comprehensiveness@1", v) for q in ["q1", "q2", "q3", "q4"] for m, b, v in [("qlm", "0", 0.5), ("sft", "10", 0.1)]]
    return per_query_table(rows), per_query_table(explain)


def test_a_best_method_is_named_only_when_it_beats_every_other_after_holm():
    # sft - qlm = [0.4, 0.3, 0.2, 0.2]: mean 0.275, sample variance 0.0275 / 3; sft - bm25 = [0.5, 0.3, 0.3, 0.3]:
    # mean 0.35, variance 0.03 / 3, t = 7. Holm over the two tests: the larger adjusted p is max(2 p_min, p_max).
    per_query, explain = _top_table(qlm=[0.5, 0.5, 0.7, 0.6])
    stats = compare_methods(per_query, n_resamples=50)
    p_qlm, p_bm25 = student_t3_two_sided_p(0.275 / (math.sqrt(0.0275 / 3) / 2)), student_t3_two_sided_p(7.0)
    sft = stats[stats.budget == "10"].iloc[0]
    assert sft.top_method == "sft" and sft.top_p_holm == pytest.approx(max(2 * min(p_qlm, p_bm25), max(p_qlm, p_bm25)))
    assert sft.top_p_holm < 0.05
    assert stats[stats.budget == "0"].top_method.isna().all()  # budget 0 has no table of its own here
    findings = summary_markdown(stats, explain, methods=["qlm", "sft"], k=1).split("**Findings.**")[1]
    assert "the best-ranking method, sft" in findings
    # qlm now within 0.025 of sft (differences [0, 0, 0.05, 0.05]: t = 1.73, p = 0.18): no best method is named.
    per_query, explain = _top_table(qlm=[0.9, 0.8, 0.85, 0.75])
    stats = compare_methods(per_query, n_resamples=50)
    assert stats[stats.budget == "10"].iloc[0].top_p_holm > 0.05
    findings = summary_markdown(stats, explain, methods=["qlm", "sft"], k=1).split("**Findings.**")[1]
    assert "the best-ranking method" not in findings and "no best-ranking method is named" in findings


def test_when_bm25_is_the_best_the_findings_say_so_and_name_no_explained_best():
    # bm25 [0.9, 0.8, 0.9, 0.8] is now the top; sft the old bm25 values: the same two differences, mirrored.
    per_query, explain = _top_table(qlm=[0.5, 0.5, 0.7, 0.6])
    per_query.loc[per_query.method == "bm25", "value"], per_query.loc[per_query.method == "sft", "value"] = (
        per_query.loc[per_query.method == "sft", "value"].to_numpy(), per_query.loc[per_query.method == "bm25", "value"].to_numpy())
    stats = compare_methods(per_query, n_resamples=50)
    assert stats[stats.budget == "10"].iloc[0].top_method == "bm25"
    findings = summary_markdown(stats, explain, methods=["qlm", "sft"], k=1).split("**Findings.**")[1]
    assert "BM25 ranks significantly above every other method on nDCG@10, but it has no attributions" in findings
    assert "the best-ranking method" not in findings


def test_tables_open_with_random_order_then_bm25():
    from rerank_audit.evaluation.summary import method_order

    assert method_order(["sft", "bm25", "zeroshot", "random"], ["zeroshot", "sft"]) == ["random", "bm25", "zeroshot", "sft"]
