"""Re-ranking re-orders the head by the scorer and keeps the first-stage tail beneath it."""

import numpy as np
import pandas as pd
import pytest

from rerank_audit.rerank import check_models_from, check_test_queries_unseen, random_reordering, rerank_candidates


class LengthScorer:
    """Scores a pair by the document's length: longer is better."""

    def __init__(self):
        self.calls = 0

    def score_pairs(self, queries, documents):
        self.calls += 1
        return np.array([len(d) for d in documents], dtype=float)


def test_head_is_reordered_by_score_and_tail_keeps_bm25_order():
    corpus = pd.DataFrame({"doc_id": list("abcde"), "title": ["", "", "", "", ""], "text": ["x", "xxx", "xx", "xxxxx", "xxxx"]})
    queries = pd.DataFrame({"query_id": ["q"], "text": ["query"]})
    first = pd.DataFrame({"query_id": "q", "doc_id": list("abcde"), "score": [5.0, 4, 3, 2, 1], "rank": [1, 2, 3, 4, 5], "method": "bm25", "budget": "0"})
    scorer = LengthScorer()
    run = rerank_candidates(scorer, first, queries, corpus, depth=3, method="toy", budget="all")
    assert run.doc_id.tolist() == ["b", "c", "a", "d", "e"]
    assert run["rank"].tolist() == [1, 2, 3, 4, 5]
    assert run.score.is_monotonic_decreasing and scorer.calls == 1
    assert set(run.method) == {"toy"} and set(run.budget) == {"all"}


def test_random_reordering_shuffles_the_head_only_and_is_seeded():
    first = pd.DataFrame(
        {"query_id": "q", "doc_id": list("abcdef"), "score": [6.0, 5, 4, 3, 2, 1], "rank": [1, 2, 3, 4, 5, 6], "method": "bm25", "budget": "0"}
    )
    orders = {tuple(random_reordering(first, depth=4, seed=seed).doc_id) for seed in range(200)}
    # Every order keeps e, f beneath; the head takes all 4! = 24 orders over 200 seeds (a
    # uniform shuffle misses one with probability below 24 * (23/24)^200 = 0.005).
    assert all(order[4:] == ("e", "f") and sorted(order[:4]) == list("abcd") for order in orders)
    assert len(orders) == 24
    run = random_reordering(first, depth=4, seed=3)
    assert run.equals(random_reordering(first, depth=4, seed=3))
    assert run["rank"].tolist() == [1, 2, 3, 4, 5, 6] and run.score.is_monotonic_decreasing
    assert set(run.method) == {"random"} and set(run.budget) == {"0"}


def test_models_from_must_name_another_dataset_with_the_same_data():
    own = {"format": "climate-fever", "sources": {"claims": "c.jsonl"}, "relevance_threshold": 1, "candidates": "bm25"}
    judged = {**own, "candidates": "judged", "models_from": "cf"}
    check_models_from({"cf": own, "cf-judged": judged})  # candidates and measures may differ
    with pytest.raises(ValueError, match=r"datasets.cf-judged.models_from: 'cf-judged' re-ranks with the models trained on 'cf', but datasets.cf-judged.sources"):
        check_models_from({"cf": own, "cf-judged": {**judged, "sources": {"claims": "other.jsonl"}}})
    with pytest.raises(ValueError, match="relevance_threshold .2. differs"):
        check_models_from({"cf": own, "cf-judged": {**judged, "relevance_threshold": 2}})
    with pytest.raises(ValueError, match="'nope' is not another dataset of this config"):
        check_models_from({"cf": own, "cf-judged": {**judged, "models_from": "nope"}})


def test_a_test_query_the_borrowed_models_trained_on_is_refused():
    mine = pd.DataFrame({"query_id": ["a", "b", "c"], "split": ["test", "train", "train"], "position": [0, 0, 1]})
    check_test_queries_unseen(mine, mine, "cf")  # the same split: test queries were never trained on
    other = pd.DataFrame({"query_id": ["a", "b", "c"], "split": ["train", "test", "train"], "position": [0, 0, 1]})
    with pytest.raises(ValueError, match="e.g. 'a', are training queries of dataset 'cf'"):
        check_test_queries_unseen(mine, other, "cf")
