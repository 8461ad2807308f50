"""Low word overlap (evaluation/separation.py): BM25's per-query AUC on a toy run, the buckets,
and each method's gain over BM25 per bucket with Holm, all worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rerank_audit.evaluation.separation import bm25_separation, gain_by_separation, separation_buckets, separation_markdown

QUERIES = ["q1", "q2", "q3", "q4", "q5", "q6"]
# Per query, its BM25 head in rank order: (doc, score, relevance or None for unjudged). depth 3.
HEADS = {
    "q1": [("a", 3.0, 1), ("b", 2.0, 0), ("c", 1.0, 0)],  # relevant on top: AUC 1
    "q2": [("a", 3.0, 0), ("b", 2.0, 0), ("c", 1.0, 1)],  # relevant at the bottom: AUC 0
    "q3": [("a", 3.0, 0), ("b", 2.0, 1), ("c", 1.0, 0)],  # beats one of two: AUC 1/2
    "q4": [("a", 3.0, 0), ("b", 2.0, 1), ("c", 2.0, 0)],  # loses one, ties one: AUC 1/4
    "q5": [("a", 3.0, 0), ("b", 2.0, 0), ("c", 1.0, 0)],  # one class only: left out
    # b unjudged (left out); d below the head (depth 3), judged relevant but not counted: AUC 1, not 3/4.
    "q6": [("a", 3.0, 1), ("b", 2.0, None), ("c", 1.0, 0), ("d", 0.5, 1)],
}


def _bm25_run_and_qrels() -> tuple[pd.DataFrame, pd.DataFrame]:
    run, qrels = [], []
    for query, head in HEADS.items():
        for rank, (doc, score, relevance) in enumerate(head, start=1):
            run.append((query, doc, score, rank, "bm25", "0"))
            if relevance is not None:
                qrels.append((query, doc, relevance))
    return (
        pd.DataFrame(run, columns=["query_id", "doc_id", "score", "rank", "method", "budget"]),
        pd.DataFrame(qrels, columns=["query_id", "doc_id", "relevance"]),
    )


@pytest.fixture
def separation() -> pd.DataFrame:
    run, qrels = _bm25_run_and_qrels()
    return bm25_separation(run, qrels, QUERIES, depth=3, relevance_threshold=1)


def test_separation_is_bm25s_auc_over_the_judged_head_and_one_class_queries_have_none(separation):
    np.testing.assert_array_equal(separation.separation, [1.0, 0.0, 0.5, 0.25, np.nan, 1.0])
    assert separation.judged.tolist() == [3, 3, 3, 3, 3, 2]
    assert separation.relevant.tolist() == [1, 1, 1, 1, 0, 1]


def test_terciles_by_hand_and_one_class_queries_left_out(separation):
    # Sorted AUCs 0, 1/4, 1/2, 1, 1: the 1/3 quantile lies 1/3 of the way from 1/4 to 1/2 (1/3),
    # the 2/3 quantile 2/3 of the way from 1/2 to 1 (5/6).
    buckets = separation_buckets(separation.set_index("query_id").separation, 3)
    assert buckets.to_dict() == {"q1": 3, "q2": 1, "q3": 2, "q4": 1, "q6": 3}
    # Equal AUCs share a bucket: three at both cut points (1/2) all go up, the middle stays empty.
    tied = separation_buckets(pd.Series([0.0, 0.5, 0.5, 0.5, 1.0]), 3)
    assert tied.tolist() == [1, 3, 3, 3, 3]


def _per_query() -> pd.DataFrame:
    bm25 = {"q1": 0.5, "q2": 0.2, "q3": 0.3, "q4": 0.4, "q5": 0.9, "q6": 0.6}
    # Gains over BM25: zeroshot low (q2, q4) +0.4, +0.2; middle (q3) +0.1; high (q1, q6) -0.1, -0.3;
    # qlm low +0.5, +0.1, middle 0, high 0, 0. q5 (one class) gets a gain that must not count.
    gains = {
        ("zeroshot", "0"): {"q1": -0.1, "q2": 0.4, "q3": 0.1, "q4": 0.2, "q5": -0.9, "q6": -0.3},
        ("qlm", "0"): {"q1": 0.0, "q2": 0.5, "q3": 0.0, "q4": 0.1, "q5": -0.9, "q6": 0.0},
        ("sft", "10"): {"q1": -0.1, "q2": 0.4, "q3": 0.1, "q4": 0.2, "q5": -0.9, "q6": -0.3},
        ("random", "0"): {q: -0.5 for q in bm25},
    }
    rows = [("toy", "bm25", "0", "test", q, "nDCG@10", v) for q, v in bm25.items()]
    rows += [("toy", "bm25", "0", "test", q, "AP", 0.0) for q in bm25]  # another measure: not read
    rows += [("toy", m, b, "test", q, "nDCG@10", bm25[q] + g) for (m, b), gain in gains.items() for q, g in gain.items()]
    return pd.DataFrame(rows, columns=["dataset", "method", "budget", "split", "query_id", "measure", "value"])


def _cauchy_p(t: float) -> float:
    """Two-sided p of a paired t-test over 2 queries (1 degree of freedom: Cauchy)."""
    return 1 - 2 / math.pi * math.atan(abs(t))


def test_gain_per_bucket_means_and_holm_by_hand(separation):
    gains = gain_by_separation(_per_query(), separation, "nDCG@10", buckets=3, alpha=0.05, n_resamples=200)
    assert set(gains.method) == {"random", "zeroshot", "qlm", "sft"}  # BM25 is the reference, random order the control
    cell = gains.set_index(["method", "budget", "bucket"])
    zeroshot_low = cell.loc[("zeroshot", "0", 1)]
    assert (zeroshot_low.queries, zeroshot_low.bm25_mean, zeroshot_low["mean"], zeroshot_low.gain) == pytest.approx((2, 0.3, 0.6, 0.3))
    assert 0.2 - 1e-9 <= zeroshot_low.ci_low <= zeroshot_low.ci_high <= 0.4 + 1e-9
    assert cell.loc[("zeroshot", "0", 3)].gain == pytest.approx(-0.2)
    assert cell.loc[("zeroshot", "0", 2)].queries == 1 and np.isnan(cell.loc[("zeroshot", "0", 2)].p)  # one query: no test
    assert (cell.loc[("zeroshot", "0", 3)].separation_low, cell.loc[("zeroshot", "0", 3)].separation_high) == (1.0, 1.0)
    # Over 2 queries with gains d1, d2, t = (d1 + d2) / |d1 - d2|: zeroshot low t = 3, high t = -2, qlm low t = 1.5,
    # qlm high identical values (p = 1); random order a constant -0.5 (p = 0, low and high). Holm over these 6 of
    # budget 0 (the one-query middle buckets untested): p ascending 0 (x6), 0 (x5), 0.2048 (x4), 0.2952 (x3),
    # 0.3743 (x2), 1 (x1), each at least the one before.
    p = {"zl": _cauchy_p(3), "zh": _cauchy_p(2), "ql": _cauchy_p(1.5)}
    assert cell.loc[("zeroshot", "0", 1)].p == pytest.approx(p["zl"])
    assert cell.loc[("qlm", "0", 3)].p == 1.0
    holm_0 = {("random", 1): 0.0, ("random", 3): 0.0, ("zeroshot", 1): 4 * p["zl"], ("zeroshot", 3): 3 * p["zh"], ("qlm", 1): 3 * p["zh"], ("qlm", 3): 1.0}
    for (method, bucket), expected in holm_0.items():
        assert cell.loc[(method, "0", bucket)].p_holm == pytest.approx(expected)
    # sft (budget 10) is its own family of 2: 2 x 0.2048, then max(0.2952, that).
    assert cell.loc[("sft", "10", 1)].p_holm == pytest.approx(2 * p["zl"])
    assert cell.loc[("sft", "10", 3)].p_holm == pytest.approx(2 * p["zl"])
    assert gains.significant.tolist() == [m == "random" and b != 2 for m, b in zip(gains.method, gains.bucket)]
    assert gains.dtypes[["bucket", "queries", "gain", "p_holm", "significant"]].astype(str).tolist() == ["int64", "int64", "float64", "float64", "bool"]


def test_the_finding_names_who_gains_where_bm25_separates_least_and_best(separation):
    # Read at 0.9 (two queries per bucket prove nothing at 0.05): zeroshot's and qlm's low gains and zeroshot's
    # high loss are significant (Holm p 0.82, 0.89, 0.89), qlm's high not (1).
    gains = gain_by_separation(_per_query(), separation, "nDCG@10", buckets=3, n_resamples=200)
    gains["significant"] = gains.p_holm < 0.9
    text = separation_markdown(gains, separation, "toy", "nDCG@10", 3, methods=["zeroshot", "qlm", "sft"])
    assert "| BM25 (nDCG@10) | no training (budget 0) | 0.30 | 0.30 | 0.55 |" in text
    assert "low (AUC 0.00–0.25, 2 queries) | middle (AUC 0.50, 1 query) | high (AUC 1.00, 2 queries)" in text
    assert "1 query whose judged head holds one class only" in text
    assert (
        "No training (budget 0): where BM25 separates relevant from non-relevant least, low (AUC 0.00–0.25, 2 queries), "
        "zero-shot and qlm gain over BM25 (random order of the same head: -0.50 [-0.50, -0.50]); where it separates best, "
        "high (AUC 1.00, 2 queries), no method gains over BM25; zero-shot falls behind it (random order of the same head: "
        "-0.50 [-0.50, -0.50])."
    ) in text
    # sft (budget 10) is read beside the same control.
    assert (
        "Budget 10 training queries: where BM25 separates relevant from non-relevant least, low (AUC 0.00–0.25, 2 queries), "
        "sft gains over BM25 (random order of the same head: -0.50 [-0.50, -0.50]); where it"
    ) in text
