"""Splits, nested budgets and BM25 on tiny inputs with exact expected results."""

import pandas as pd
import pytest

from rerank_audit.data.splits import budget_queries, evaluable_queries, split_queries
from rerank_audit.retrieval.bm25 import bm25_candidates, bm25_index


def test_only_queries_with_a_relevant_document_are_evaluable():
    qrels = pd.DataFrame({"query_id": ["a", "a", "b", "c"], "doc_id": ["1", "2", "1", "3"], "relevance": [0, 2, 0, 1]})
    assert evaluable_queries(qrels, 1) == ["a", "c"]
    assert evaluable_queries(qrels, 2) == ["a"]


def test_split_is_determined_by_seed_not_input_order():
    ids = [f"q{i:02d}" for i in range(40)]
    first = split_queries(ids, seed=3, dev=4, test=0.25)
    again = split_queries(list(reversed(ids)), seed=3, dev=4, test=0.25)
    pd.testing.assert_frame_equal(first, again)
    assert first.split.value_counts().to_dict() == {"train": 26, "test": 10, "dev": 4}
    assert sorted(first.query_id) == ids
    assert not split_queries(ids, seed=4, dev=4, test=0.25).equals(first)


def test_budgets_are_nested_prefixes_of_the_training_queries():
    splits = split_queries([f"q{i:02d}" for i in range(40)], seed=1, dev=0, test=10)
    small, large, everything = (budget_queries(splits, b) for b in (5, 20, "all"))
    assert len(small) == 5 and len(large) == 20 and len(everything) == 30
    assert large[:5] == small and everything[:20] == large
    assert set(everything) == set(splits.query_id[splits.split == "train"])
    with pytest.raises(ValueError, match="exceeds the 30 training queries"):
        budget_queries(splits, 31)


def test_bm25_orders_five_documents_exactly():
    corpus = pd.DataFrame(
        {
            "doc_id": ["d1", "d2", "d3", "d4", "d5"],
            "title": ["Sea level", "Snow", "Sea ice", "Tide gauges", "Forest"],
            "text": [
                "Sea level rise measured by satellite altimetry in the Adriatic sea.",
                "Snow depth in the Alps.",
                "Arctic sea ice extent.",
                "Hourly sea level from tide gauges in Venice.",
                "Carbon dioxide flux over a boreal forest.",
            ],
        }
    )
    queries = pd.DataFrame({"query_id": ["q1", "q2"], "text": ["sea level Venice", "glacier"]})
    run = bm25_candidates(bm25_index(corpus), queries, k=10)
    # d4 matches all three terms; d1 repeats "sea" and "level"; d3 only "sea"; no term of
    # "glacier" occurs, so q2 gets no candidates (bm25s's zero-score padding is dropped).
    assert run.doc_id.tolist() == ["d4", "d1", "d3"]
    assert run["rank"].tolist() == [1, 2, 3]
    assert (run.query_id == "q1").all() and run.score.is_monotonic_decreasing
    assert set(run.method) == {"bm25"}


def test_bm25_stems_words_so_plural_queries_match():
    corpus = pd.DataFrame({"doc_id": ["a", "b"], "title": ["", ""], "text": ["glacier mass balance", "river flow"]})
    run = bm25_candidates(bm25_index(corpus, stemmer="english"), pd.DataFrame({"query_id": ["q"], "text": ["glaciers"]}), k=2)
    assert run.doc_id.tolist() == ["a"]
    unstemmed = bm25_candidates(bm25_index(corpus, stemmer=None), pd.DataFrame({"query_id": ["q"], "text": ["glaciers"]}), k=2)
    assert unstemmed.empty
