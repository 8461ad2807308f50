"""Calibration (evaluation/calibration.py): the pooled AUC and its query-bootstrap CI, the
bimodality coefficient and the extremes finding, worked by hand; the figure has one panel per method."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rerank_audit.evaluation.calibration import (
    bimodality_coefficient, calibration_figure, calibration_markdown, calibration_table, standardised_heads,
)  # fmt: skip

RUN_COLUMNS = ["query_id", "doc_id", "score", "rank", "method", "budget"]
QRELS = pd.DataFrame(
    [("q1", "a", 1), ("q1", "b", 0), ("q1", "c", 0), ("q1", "d", 1), ("q2", "a", 2), ("q2", "b", 0), ("q2", "c", 0)],
    columns=["query_id", "doc_id", "relevance"],
)


def _run(method: str, budget: str, scores: dict[str, list[tuple[str, float]]]) -> pd.DataFrame:
    """A run from each query's documents in rank order."""
    rows = [(q, doc, score, rank, method, budget) for q, docs in scores.items() for rank, (doc, score) in enumerate(docs, start=1)]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


# Heads of depth 4. q1: a relevant 0.9, c 0.5, b 0.2, x unjudged; d (relevant) below the head. q2: a relevant
# 0.4, b 0.4, e unjudged, c 0.1. q3 is not a test query.
QLM = _run("qlm", "0", {"q1": [("a", 0.9), ("c", 0.5), ("b", 0.2), ("x", 0.1), ("d", 0.0)],
                        "q2": [("a", 0.4), ("b", 0.4), ("e", 0.3), ("c", 0.1)], "q3": [("a", 5.0)]})  # fmt: skip
# Two values only (bimodality 1): relevant 1, not relevant 0.
SFT = _run("sft", "10", {"q1": [("a", 1.0), ("b", 0.0), ("c", 0.0)], "q2": [("a", 1.0), ("b", 0.0), ("c", 0.0)]})


@pytest.fixture
def pairs() -> pd.DataFrame:
    return standardised_heads([QLM, SFT], QRELS, ["q1", "q2"], depth=4, relevance_threshold=1)


def test_the_pooled_auc_by_hand_and_its_ci_over_queries(pairs):
    qlm = pairs[pairs.method == "qlm"]
    assert sorted(zip(qlm.query_id, qlm.doc_id)) == [("q1", "a"), ("q1", "b"), ("q1", "c"), ("q2", "a"), ("q2", "b"), ("q2", "c")]
    row = calibration_table(pairs, "toy", n_resamples=500).set_index("method").loc["qlm"]
    # Relevant 0.9 and 0.4 against not relevant 0.2, 0.5, 0.4, 0.1: 0.9 wins 4; 0.4 wins 2, ties 1 (½), loses 1: 6.5 / 8.
    assert row.auc == pytest.approx(6.5 / 8)
    assert (row.queries, row.pairs, row.relevant_pairs) == (2, 6, 2)
    # A resample holds q1 twice (AUC 1), both (13/16) or q2 twice (0.4 ties 0.4, beats 0.1: 3/4).
    assert 0.75 <= row.auc_ci_low <= 6.5 / 8 <= row.auc_ci_high <= 1.0
    # Standardised per method: mean 0, SD 1 over its pooled pairs.
    for _, group in pairs.groupby("method"):
        assert (group.z.mean(), group.z.std(ddof=0)) == pytest.approx((0.0, 1.0))


def test_bimodality_coefficient_by_hand():
    # Two values: skewness 0, kurtosis 1 (z = ±1): 1. [-1, 0, 0, 0, 1]: variance 2/5, z⁴ = 6.25 twice in 5: kurtosis 2.5, BC 0.4.
    assert bimodality_coefficient([0, 0, 0, 1, 1, 1]) == pytest.approx(1.0)
    assert bimodality_coefficient([-1, 0, 0, 0, 1]) == pytest.approx(0.4)
    # Skewed two values (one in five): still two values, 1.
    assert bimodality_coefficient([0, 0, 0, 0, 1]) == pytest.approx(1.0)
    assert np.isnan(bimodality_coefficient([2.0, 2.0]))


def test_extremes_and_their_finding():
    # qlm: -1, 0, 0, 0, 1 (bimodality 0.4, as above); sft: two values (1); reward: one score (no bimodality), judged
    # non-relevant only (no AUC).
    pairs = pd.DataFrame(
        [("qlm", "0", "q1", 1.0, True), ("qlm", "0", "q1", 0.0, False), ("qlm", "0", "q1", -1.0, False), ("qlm", "0", "q2", 0.0, True),
         ("qlm", "0", "q2", 0.0, False), *[("sft", "10", q, float(r), r) for q in ("q1", "q2", "q3") for r in (True, False)],
         ("reward", "10", "q1", 0.3, False), ("reward", "10", "q1", 0.3, False)],
        columns=["method", "budget", "query_id", "score", "relevant"],
    )  # fmt: skip
    table = calibration_table(pairs, "toy", n_resamples=200)
    rows = table.set_index("method")
    assert (rows.loc["qlm"].bimodality, rows.loc["sft"].bimodality) == pytest.approx((0.4, 1.0))
    assert rows.extremes.to_dict() == {"qlm": False, "sft": True, "reward": False}
    # qlm: relevant 1 and 0 against 0, -1, 0: 3 + (½ + 1 + ½) wins of 6. A quarter of the resamples draw q2 twice
    # (all ties: 0.5), so the CI reaches 0.5; sft's resamples are all 1.
    assert rows.loc["qlm"].auc == pytest.approx(5 / 6) and rows.loc["qlm"].auc_ci_low == 0.5
    assert np.isnan(rows.loc["reward"].auc) and rows.loc["reward"].note == "no AUC: all 2 judged head documents are not relevant"
    text = calibration_markdown(table, "toy", methods=["qlm", "sft", "reward"])
    assert (
        "Pushing their scores to the extremes (bimodality coefficient above 5/9, a uniform distribution's): "
        "sft (budget 10); not: qlm."
    ) in text
    assert "Scores that separate relevant from non-relevant documents across queries (AUC CI above 0.5): sft (budget 10)." in text


def test_the_figure_has_one_panel_per_method_and_budget(pairs, tmp_path):
    bm25 = _run("bm25", "0", {"q1": [("a", 3.0), ("b", 2.0), ("c", 1.0)], "q2": [("b", 3.0), ("a", 2.0), ("c", 1.0)]})
    pairs = pd.concat([pairs, standardised_heads([bm25], QRELS, ["q1", "q2"], depth=4, relevance_threshold=1)])
    path = tmp_path / "calibration.png"
    figure = calibration_figure(pairs, calibration_table(pairs, "toy", n_resamples=100), path, methods=["qlm", "sft"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_title().split("\n")[0] for ax in figure.axes] == ["BM25", "qlm", "sft (budget 10)"]
