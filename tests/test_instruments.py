"""White box against black box: the attributions' lexical excess beside the stuffing probe."""

import math

import pandas as pd
import pytest

from rerank_audit.evaluation.instruments import agreement, instruments_markdown, instruments_table


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
    rho, p, n = agreement(table)
    assert (rho, p, n) == pytest.approx((1.0, 2 / 24, 4))
    # One adjacent swap among 5: rho = 1 - 6 * 2 / (5 * 24) = 0.9; pairings at |rho| >= 0.9: the
    # identity, 4 adjacent swaps, and their 5 reverses: 10 / 120.
    rho, p, _ = agreement(pd.DataFrame({"excess": [1, 2, 3, 4, 5], "stuffing": [1, 3, 2, 4, 5]}))
    assert (rho, p) == pytest.approx((0.9, 10 / 120))
    assert math.isnan(agreement(table.head(2))[0])


def test_the_section_says_whether_the_instruments_agree():
    methods = ["zeroshot", "sft", "dpo", "dpo_pairs", "reward", "qlm", "qlm_sft"]
    same = {m: i / 10 for i, m in enumerate(methods)}
    agree = instruments_markdown(instruments_table(_stats(same), _tests({m: 10 * v for m, v in same.items()})))
    # Seven methods in the same order: p = 2 / 7! = 0.0004.
    assert "They agree: across the 7 methods, Spearman's ρ = +1.00 (permutation p = 0.0004)." in agree
    reversed_order = {m: -10 * v for m, v in same.items()}
    disagree = instruments_markdown(instruments_table(_stats(same), _tests(reversed_order)))
    assert "They do not show agreement: across the 7 methods, Spearman's ρ = -1.00" in disagree
