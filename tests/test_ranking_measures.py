"""ir-measures figures on a hand-made run equal hand-computed values."""

import math

import pandas as pd
import pytest

from rerank_audit.evaluation.ranking import aggregate, evaluate_run, parse_measures, per_query_measures

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
    measures = parse_measures(["nDCG@10", "RR@10", "AP", "P@5", "R@2", "Judged@10"], relevance_threshold=1)
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
