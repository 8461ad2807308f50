"""ir-measures figures on a hand-made run equal hand-computed values."""

import itertools
import math

import pandas as pd
import pytest

from rerank_audit.config import check_measures
from rerank_audit.evaluation.ranking import (
    aggregate,
    evaluate_random_reordering,
    evaluate_run,
    parse_measures,
    per_query_measures,
)

QRELS = pd.DataFrame(
    {"query_id": ["q1", "q1", "q1", "q2", "q3"], "doc_id": ["a", "b", "c", "x", "z"], "relevance": [2, 0, 1, 1, 1]}
)
# q1 ranks b (non-relevant), a (grade 2), d (unjudged), c (grade 1); q2 ranks x first; q3 retrieves nothing.
RUN = pd.DataFrame(
    {"query_id": ["q1"] * 4 + ["q2"], "doc_id": ["b", "a", "d", "c", "x"], "score": [4.0, 3.0, 2.0, 1.0, 9.0], "method": "m", "budget": "0"}
)


def values(table, query):
    return dict(zip(table[table.query_id == query].measure, table[table.query_id == query].value))


def test_measures_match_hand_computation():
    measures = parse_measures(["nDCG@10", "RR@10", "AP", "P@5", "R@2", "Judged@10", "nDCG(judged_only=True)@10"], relevance_threshold=1)
    table = per_query_measures(RUN, QRELS, ["q1", "q2", "q3"], measures)
    q1 = values(table, "q1")
    # trec_eval's nDCG: linear gains (the grade itself), log2(rank + 1) discount.
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert q1["nDCG@10"] == pytest.approx(dcg / ideal)
    assert q1["RR@10"] == pytest.approx(1 / 2)
    assert q1["AP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert q1["P@5"] == pytest.approx(2 / 5)
    assert q1["R@2"] == pytest.approx(1 / 2)
    assert q1["Judged@10"] == pytest.approx(3 / 4)  # share of the (4) retrieved documents that are judged
    # Judged-only nDCG drops the unjudged d first (condensed list b, a, c); the ideal is unchanged.
    assert q1["nDCG(judged_only=True)@10"] == pytest.approx((2 / math.log2(3) + 1 / math.log2(4)) / ideal)
    assert values(table, "q2")["nDCG@10"] == pytest.approx(1.0)
    # A query without candidates counts as 0 rather than disappearing from the mean.
    assert set(values(table, "q3").values()) == {0.0}


def test_relevance_threshold_applies_to_binary_measures_only():
    measures = parse_measures(["RR@10", "nDCG@10"], relevance_threshold=2)
    q1 = values(per_query_measures(RUN, QRELS, ["q1"], measures), "q1")
    assert q1["RR@10"] == pytest.approx(1 / 2)  # a (grade 2) at rank 2
    measures = parse_measures(["AP"], relevance_threshold=2)
    assert values(per_query_measures(RUN, QRELS, ["q1"], measures), "q1")["AP"] == pytest.approx(1 / 2)


def test_aggregate_is_the_mean_over_evaluated_queries():
    table = evaluate_run(RUN, QRELS, ["q1", "q2", "q3"], parse_measures(["RR@10"], 1), "toy", "test")
    metrics = aggregate(table)
    assert metrics.to_dict("records") == [
        {"dataset": "toy", "method": "m", "budget": "0", "split": "test", "measure": "RR@10", "value": pytest.approx(0.5), "queries": 3}
    ]


def first_stage(queries: dict[str, list[str]]) -> pd.DataFrame:
    """A BM25-like run: each query's documents in the given order (rank 1 first)."""
    rows = [(q, d, float(len(docs) - i), i + 1) for q, docs in queries.items() for i, d in enumerate(docs)]
    return pd.DataFrame(rows, columns=["query_id", "doc_id", "score", "rank"]).assign(method="bm25", budget="0")


def test_random_row_approaches_the_closed_form_expected_reciprocal_rank():
    # One relevant document among n = 5, all re-ordered: its rank is uniform on 1..5, so
    # E[RR] = (1/5) * (1 + 1/2 + 1/3 + 1/4 + 1/5) = H_5 / 5 = 137 / 300.
    n, queries, seeds = 5, 200, 50
    run = first_stage({f"q{i:03d}": [f"d{j}" for j in range(n)] for i in range(queries)})
    qrels = pd.DataFrame({"query_id": sorted(set(run.query_id)), "doc_id": "d4", "relevance": 1})
    table = evaluate_random_reordering(run, qrels, sorted(set(run.query_id)), parse_measures(["RR@10"], 1), depth=n, seeds=seeds, dataset="toy", scope="test")
    assert set(table.method) == {"random"} and set(table.budget) == {"0"} and len(table) == queries
    # 10,000 draws, per-draw sd of RR 0.29: standard error 0.003; tolerance 0.015 (5 standard errors).
    assert table.value.mean() == pytest.approx(137 / 300, abs=0.015)
    # BM25 ranks d4 last (RR = 1/5): the control is not the first stage.
    assert table.value.mean() > 0.3


def test_random_row_equals_the_exact_expectation_over_all_head_orders():
    # Head a, b, c (grades 2, 0, 1) below depth 3 is shuffled; the tail d (grade 1) stays 4th.
    grades = {"a": 2, "b": 0, "c": 1, "d": 1}
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)

    def ndcg(order):  # trec_eval nDCG: linear gains, log2(rank + 1) discount
        return sum(grades[doc] / math.log2(rank + 2) for rank, doc in enumerate(order)) / ideal

    def rr(order):
        return next(1 / (rank + 1) for rank, doc in enumerate(order) if grades[doc] >= 1)

    orders = [(*head, "d") for head in itertools.permutations("abc")]
    exact = {"nDCG@10": sum(map(ndcg, orders)) / 6, "RR@10": sum(map(rr, orders)) / 6}
    assert exact["RR@10"] == pytest.approx((1 + 1 + 1 / 2 + 1 + 1 / 2 + 1) / 6)  # by hand: only b first misses rank 1
    queries = [f"q{i:03d}" for i in range(100)]
    run = first_stage({q: list("abcd") for q in queries})
    qrels = pd.DataFrame([(q, doc, grade) for q in queries for doc, grade in grades.items()], columns=["query_id", "doc_id", "relevance"])
    table = evaluate_random_reordering(run, qrels, queries, parse_measures(list(exact), 1), depth=3, seeds=40, dataset="toy", scope="test")
    # 100 queries x 40 seeds = 4000 uniform draws of the 6 orders; per-draw sd is at most 0.25
    # (nDCG) so the standard error is below 0.004; tolerance 0.02 (5 standard errors).
    means = table.groupby("measure").value.mean()
    assert means["nDCG@10"] == pytest.approx(exact["nDCG@10"], abs=0.02)
    assert means["RR@10"] == pytest.approx(exact["RR@10"], abs=0.02)


def test_primary_measures_must_be_among_the_measures_and_names_must_parse():
    check_measures(["nDCG@5", "RR@5", "AP"], ["nDCG@5", "RR@5"], "datasets.cf")
    with pytest.raises(ValueError, match=r"datasets.cf: primary measures \['nDCG@10'\] are not among its measures"):
        check_measures(["nDCG@5", "RR@5"], ["nDCG@10"], "datasets.cf")
    with pytest.raises(ValueError, match="datasets.cf: measure 'nDCGG@10' is not an ir-measures name"):
        check_measures(["nDCGG@10"], [], "datasets.cf")
