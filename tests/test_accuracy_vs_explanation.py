"""Accuracy against explanation across methods: profile values and ρ by hand, one resample draw shared by every method and measure."""

import numpy as np
import pandas as pd
import pytest

from rerank_audit.evaluation.accuracy_vs_explanation import accuracy_vs_explanation, accuracy_vs_explanation_markdown


def _tables():
    """Three methods over four test queries; the first two queries are explained (a top and a bottom pair each)."""
    queries = ["q1", "q2", "q3", "q4"]
    accuracy = {"a": [0.2, 0.4, 0.6, 0.8], "b": [0.4, 0.6, 0.8, 1.0], "c": [0.6, 0.8, 1.0, 1.0]}  # means 0.5, 0.7, 0.85
    simulated = {"a": [0.0, 0.2], "b": [0.6, 0.6], "c": [0.2, 0.4]}  # means 0.1, 0.6, 0.3
    per_query = pd.DataFrame(
        [dict(dataset="d", method=m, budget="0", split="test", query_id=q, measure="nDCG@5", value=v) for m, vs in accuracy.items() for q, v in zip(queries, vs)]
        + [dict(dataset="d", method="a", budget="0", split="all", query_id="q9", measure="nDCG@5", value=1.0)]  # not a test query: left out
    )
    explained = pd.DataFrame(
        [dict(dataset="d", method=m, budget="0", split="test", query_id=q, measure="simulatability", value=v) for m, vs in simulated.items() for q, v in zip(queries, vs)]
    )
    # Writer's log-odds: a's separate the decision perfectly with the explanation, not at all alone.
    verdict = pd.DataFrame(
        [
            dict(method=m, budget="0", query_id=q, relevant=end == "top", verdict_log_odds=w, verdict_log_odds_input_only=o)
            for m in accuracy
            for q, end, w, o in [("q1", "top", 2.0, 0.0), ("q1", "bottom", -1.0, 0.0), ("q2", "top", 1.0, 0.0), ("q2", "bottom", 0.5, 0.0)]
        ]
    )
    return per_query, explained, verdict


def test_profiles_and_correlations_by_hand():
    per_query, explained, verdict = _tables()
    profiles, correlations = accuracy_vs_explanation(per_query, explained, verdict, "nDCG@5", "d", n_resamples=500, seed=1)
    rows = profiles.set_index("method")
    assert rows.accuracy.to_dict() == pytest.approx({"a": 0.5, "b": 0.7, "c": 0.85})
    assert rows.simulatability.to_dict() == pytest.approx({"a": 0.1, "b": 0.6, "c": 0.3})
    assert rows.explained_queries.tolist() == [2, 2, 2]
    # Tops 2.0, 1.0 vs bottoms -1.0, 0.5: all 4 (top, bottom) pairs won -> AUC 1; input alone all tied -> 0.5.
    assert rows.verdict_auc.tolist() == pytest.approx([1.0] * 3)
    assert rows.verdict_added.tolist() == pytest.approx([0.5] * 3)
    by_measure = correlations.set_index("measure")
    # Ranks of accuracy (1, 2, 3) against simulatability (1, 3, 2): rho = 1 - 6 * 2 / (3 * 8) = 0.5.
    assert by_measure.rho["simulatability"] == pytest.approx(0.5)
    assert by_measure.p["simulatability"] == pytest.approx(1.0)  # every one of the 6 orders has |rho| >= 0.5
    assert np.isnan(by_measure.detectable["simulatability"])
    # Verdict AUC ties across the methods: rho undefined.
    assert np.isnan(by_measure.rho["verdict_auc"])
    text = accuracy_vs_explanation_markdown(profiles, correlations, "d")
    assert "| b | 0.700 [" in text and "+0.50" in text and "no ρ could be significant" in text
    assert "verdict AUC with the explanation: one of the two is equal for all 3 methods" in text


def test_one_draw_of_queries_for_every_measure():
    # Simulatability equal to accuracy query by query: every resample ranks the methods the same way on
    # both, so rho is 1 in every resample (separate draws for the two measures would scatter it).
    per_query, _, verdict = _tables()
    explained = per_query[per_query.split == "test"].assign(measure="simulatability")
    _, correlations = accuracy_vs_explanation(per_query, explained, verdict.iloc[0:0], "nDCG@5", "d", n_resamples=300, seed=2)
    row = correlations.set_index("measure").loc["simulatability"]
    assert (row.rho, row.rho_ci_low, row.rho_ci_high) == pytest.approx((1.0, 1.0, 1.0))


def test_one_draw_of_queries_for_every_method():
    # b and c are a shifted by a constant on every query, on each measure (with different query profiles for the two):
    # with one draw for all methods every resample keeps a < b < c on both; a draw per method would reorder them.
    queries, shift = ["q1", "q2", "q3", "q4"], {"a": 0.0, "b": 0.05, "c": 0.1}
    profile = {"nDCG@5": [0.1, 0.9, 0.3, 0.7], "simulatability": [0.8, 0.0, 0.5, 0.2]}
    frame = pd.DataFrame(
        [dict(dataset="d", method=m, budget="0", split="test", query_id=q, measure=name, value=v + shift[m] * (1 + (name == "simulatability")))
         for m in shift for name, values in profile.items() for q, v in zip(queries, values)]
    )  # fmt: skip
    _, correlations = accuracy_vs_explanation(frame[frame.measure == "nDCG@5"], frame[frame.measure == "simulatability"], frame.iloc[0:0].assign(relevant=[]),
                                              "nDCG@5", "d", n_resamples=300, seed=4)  # fmt: skip
    row = correlations.set_index("measure").loc["simulatability"]
    assert (row.rho, row.rho_ci_low, row.rho_ci_high, row.resamples_left_out) == pytest.approx((1.0, 1.0, 1.0, 0))


def test_untrained_methods_keep_their_budget_and_repeat_in_every_table():
    per_query, explained, verdict = _tables()
    trained = {"25": [0.3, 0.3, 0.3, 0.3], "100": [0.9, 0.9, 0.9, 0.9]}
    extra = [dict(dataset="d", method="t", budget=b, split="test", query_id=q, measure="nDCG@5", value=v) for b, vs in trained.items() for q, v in zip(["q1", "q2", "q3", "q4"], vs)]
    explained_extra = [dict(dataset="d", method="t", budget=b, split="test", query_id=q, measure="simulatability", value=0.5) for b in trained for q in ["q1", "q2"]]
    profiles, correlations = accuracy_vs_explanation(pd.concat([per_query, pd.DataFrame(extra)]), pd.concat([explained, pd.DataFrame(explained_extra)]),
                                                     verdict, "nDCG@5", "d", n_resamples=200, seed=5)  # fmt: skip
    assert list(dict.fromkeys(profiles.table_budget)) == ["25", "100"]
    by_table = {b: rows.set_index("method") for b, rows in profiles.groupby("table_budget")}
    assert by_table["25"].budget.to_dict() == {"a": "0", "b": "0", "c": "0", "t": "25"}
    assert by_table["25"].accuracy["t"] == pytest.approx(0.3) and by_table["100"].accuracy["t"] == pytest.approx(0.9)
    untrained = ["accuracy", "accuracy_ci_low", "accuracy_ci_high", "simulatability_ci_low", "simulatability_ci_high"]
    pd.testing.assert_frame_equal(by_table["25"].loc[["a", "b", "c"], untrained], by_table["100"].loc[["a", "b", "c"], untrained])
    assert set(correlations.table_budget) == {"25", "100"} and (correlations.methods[correlations.measure == "simulatability"] == 4).all()
    assert "| a (untrained) |" in accuracy_vs_explanation_markdown(profiles, correlations, "d")


def test_explained_query_without_ranking_is_an_error():
    per_query, explained, verdict = _tables()
    with pytest.raises(ValueError, match="explains queries it has no nDCG@5 for"):
        accuracy_vs_explanation(per_query[per_query.query_id != "q2"], explained, verdict, "nDCG@5", "d", n_resamples=10)
