"""White box against black box: the attributions' lexical excess beside the stuffing probe."""

import math

import pandas as pd
import pytest

from rerank_audit.evaluation.instruments import agreement, instruments_markdown, instruments_table, marker_instruments_markdown, marker_instruments_table


def _stats(excess: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method, value in excess.items():
        for measure, mean in (("lexical_excess", value), ("lexical_shortcut", 0.5 + value), ("lexical_baseline", 0.5)):
            rows.append({"dataset": "d", "budget": "0", "method": method, "measure": measure, "mean": mean, "ci_low": mean - 0.1, "ci_high": mean + 0.1})
    return pd.DataFrame(rows)


def _tests(stuffing: dict[str, float]) -> pd.DataFrame:
    rows = [{"dataset": "d", "budget": "0", "method": m, "probe": "stuffing", "mean": v, "ci_low": v - 1, "ci_high": v + 1, "response": "rises"} for m, v in stuffing.items()]
    rows.append({"dataset": "d", "budget": "0", "method": "zeroshot", "probe": "shuffle", "mean": 9.0, "ci_low": 8.0, "ci_high": 10.0, "response": "rises"})
    return pd.DataFrame(rows)


def test_the_table_pairs_each_methods_lexical_excess_with_its_stuffing_response():
    # bm25 has a stuffing response but no attributions: it is left out; shuffle rows are ignored.
    table = instruments_table(_stats({"zeroshot": 0.1, "qlm": 0.3}), _tests({"zeroshot": 0.2, "qlm": 0.9, "bm25": 2.0}))
    assert table.method.tolist() == ["qlm", "zeroshot"] or table.method.tolist() == ["zeroshot", "qlm"]
    row = table.set_index("method").loc["qlm"]
    assert (row.excess, row.shortcut, row.baseline, row.stuffing, row.stuffing_low) == pytest.approx((0.3, 0.8, 0.5, 0.9, -0.1))


def test_agreement_is_spearman_with_an_exact_permutation_p():
    # Four methods in the same order on both: rho 1; of the 4! = 24 pairings only this one and its
    # reverse reach |rho| = 1, so the two-sided p is 2 / 24.
    table = pd.DataFrame({"excess": [0.1, 0.2, 0.3, 0.4], "stuffing": [1.0, 2.0, 3.0, 5.0]})
    rho, p, n = agreement(table.excess, table.stuffing)
    assert (rho, p, n) == pytest.approx((1.0, 2 / 24, 4))
    # One adjacent swap among 5: rho = 1 - 6 * 2 / (5 * 24) = 0.9; pairings at |rho| >= 0.9: the
    # identity, 4 adjacent swaps, and their 5 reverses: 10 / 120.
    rho, p, _ = agreement([1, 2, 3, 4, 5], [1, 3, 2, 4, 5])
    assert (rho, p) == pytest.approx((0.9, 10 / 120))
    assert math.isnan(agreement(table.excess.head(2), table.stuffing.head(2))[0])


def test_the_section_says_whether_the_instruments_agree():
    methods = ["zeroshot", "sft", "dpo", "dpo_pairs", "reward", "qlm", "qlm_sft"]
    same = {m: i / 10 for i, m in enumerate(methods)}
    agree = instruments_markdown(instruments_table(_stats(same), _tests({m: 10 * v for m, v in same.items()})))
    # Seven methods in the same order: p = 2 / 7! = 0.0004.
    assert "They agree: across the 7 methods, Spearman's ρ = +1.00 (permutation p = 0.0004)." in agree
    reversed_order = {m: -10 * v for m, v in same.items()}
    disagree = instruments_markdown(instruments_table(_stats(same), _tests(reversed_order)))
    assert "They do not show agreement: across the 7 methods, Spearman's ρ = -1.00" in disagree


def test_the_marker_section_pairs_each_methods_marker_share_with_its_insertion_response():
    # dpo_pairs: shares 0.8 and 0.6 (mean 0.7); qlm 0.1 and NaN (no positive attribution: left out); zeroshot 0.2.
    pairs = pd.DataFrame(
        {"method": ["dpo_pairs", "dpo_pairs", "qlm", "qlm", "zeroshot"], "budget": ["all", "all", "0", "0", "0"],
         "marker_share": [0.8, 0.6, 0.1, float("nan"), 0.2]}
    )
    tests = pd.DataFrame(
        [{"method": m, "budget": b, "probe": probe, "mean": v, "ci_low": v - 0.5, "ci_high": v + 0.5, "response": "rises" if v > 1 else "none"}
         for m, b, probe, v in (("dpo_pairs", "all", "marker", 2.3), ("qlm", "0", "marker", 0.1), ("zeroshot", "0", "marker", 0.3),
                                ("bm25", "0", "marker", 0.0), ("qlm", "0", "stuffing", 9.0))]
    )
    table = marker_instruments_table(pairs, tests, n_resamples=200).set_index("method")
    assert sorted(table.index) == ["dpo_pairs", "qlm", "zeroshot"]  # bm25: no attributions
    assert (table.loc["dpo_pairs", "share"], table.loc["dpo_pairs", "documents"], table.loc["dpo_pairs", "insertion"]) == (pytest.approx(0.7), 2, 2.3)
    assert (table.loc["qlm", "share"], table.loc["qlm", "documents"], table.loc["qlm", "insertion"]) == (0.1, 1, 0.1)
    assert 0.6 <= table.loc["dpo_pairs", "share_low"] <= 0.7 <= table.loc["dpo_pairs", "share_high"] <= 0.8
    section = marker_instruments_markdown(table.reset_index())
    assert "| dpo_pairs, budget all | 2 | 0.70 [" in section
    # The same order on both (qlm < zeroshot < dpo_pairs): rho 1, but of 3! = 6 pairings 2 reach |rho| = 1: p = 1/3.
    assert "Spearman's ρ = +1.00 across the 3 methods (permutation p = 0.33); with 3 methods no correlation can be told from chance (the smallest possible p is 2/3! = 0.33" in section
