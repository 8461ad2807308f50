"""Re-ranking re-orders the head by the scorer and keeps the first-stage tail beneath it."""

import numpy as np
import pandas as pd
import pytest

from rerank_audit.config import check_models_from, check_test_queries_unseen, fusion_settings
from rerank_audit.rerank import fuse_with_first_stage, random_reordering, rerank_candidates


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


def test_fusion_mixes_per_query_min_max_scores_of_the_method_and_bm25_by_hand():
    # BM25 3, 2, 0 -> 1, 2/3, 0; the method 0, 10, 5 -> 0, 1, 1/2; d is the tail (depth 3)
    first = pd.DataFrame({"query_id": "q", "doc_id": list("abcd"), "score": [3.0, 2, 0, -1], "rank": [1, 2, 3, 4], "method": "bm25", "budget": "0"})
    method = pd.DataFrame({"query_id": "q", "doc_id": list("bcad"), "score": [10.0, 5, 0, -4], "rank": [1, 2, 3, 4], "method": "qlm_sft", "budget": "25"})
    fused = fuse_with_first_stage(method, first, depth=3, weight=0.2)
    # a: 0.8*0 + 0.2*1 = 0.2; b: 0.8*1 + 0.2*2/3 = 0.9333; c: 0.8*0.5 + 0.2*0 = 0.4
    assert fused.doc_id.tolist() == ["b", "c", "a", "d"]
    np.testing.assert_allclose(fused.score[:3], [0.8 + 0.2 * 2 / 3, 0.4, 0.2])
    assert set(fused.method) == {"qlm_sft+bm25"} and set(fused.budget) == {"25"} and fused["rank"].tolist() == [1, 2, 3, 4]
    # BM25 weighted 0.9: a 0.9, b 0.1 + 0.6 = 0.7, c 0.05
    assert fuse_with_first_stage(method, first, depth=3, weight=0.9).doc_id.tolist() == ["a", "b", "c", "d"]


def test_fusion_of_a_query_with_equal_scores_keeps_the_other_side_order():
    first = pd.DataFrame({"query_id": "q", "doc_id": list("abc"), "score": [3.0, 2, 1], "rank": [1, 2, 3], "method": "bm25", "budget": "0"})
    flat = first.assign(score=1.0, method="qlm")
    assert fuse_with_first_stage(flat, first, depth=3, weight=0.2).doc_id.tolist() == ["a", "b", "c"]


def test_fusion_settings_read_a_list_or_a_weighted_mapping_and_reject_unknown_methods():
    assert fusion_settings({"fusion": ["qlm"]}, ["qlm", "sft"]) == (0.2, ["qlm"])
    assert fusion_settings({"fusion": ["qlm"], "fusion_weight": 0.5}, ["qlm"]) == (0.5, ["qlm"])
    assert fusion_settings({"fusion": {"weight": 0.3, "methods": ["sft"]}}, ["qlm", "sft"]) == (0.3, ["sft"])
    assert fusion_settings({}, ["qlm"]) == (0.2, [])
    with pytest.raises(ValueError, match="rerank.fusion names \\['reward'\\], which are not in methods"):
        fusion_settings({"fusion": ["reward"]}, ["qlm"])


def test_models_from_needs_the_same_qlm_template_default_filled_in():
    source = {"format": "beir", "sources": {"folder": "x"}}
    assert check_models_from({"a": source, "b": {**source, "models_from": "a", "qlm_template": "Passage: {document}\nA claim about this passage:"}}) is None
    with pytest.raises(ValueError, match="datasets.b.qlm_template"):
        check_models_from({"a": source, "b": {**source, "models_from": "a", "qlm_template": "Q: {document}\nquery:"}})
