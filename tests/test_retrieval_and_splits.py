"""Splits, nested budgets and BM25 on tiny inputs with exact expected results."""

import math

import pandas as pd
import pytest
from rank_bm25 import BM25Okapi

from rerank_audit.data.splits import budget_queries, evaluable_queries, split_queries
from rerank_audit.retrieval.bm25 import bm25_candidates, bm25_index, judged_candidates


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


class LuceneBM25(BM25Okapi):
    """rank-bm25's BM25 with the idf bm25s uses by default (Lucene: log(1 + (N - n + 0.5) / (n + 0.5)))."""

    def _calc_idf(self, nd):
        for word, freq in nd.items():
            self.idf[word] = math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


# Plain lower-case words (no stemming, no stop words), so both implementations tokenise alike.
POOL_CORPUS = pd.DataFrame(
    {
        "doc_id": ["d1", "d2", "d3", "d4", "d5", "d6", "d7"],
        "title": [""] * 7,
        "text": [
            "arctic sea ice extent declines",
            "sea ice thickness from altimetry",
            "sea ice sea ice sea ice arctic arctic",  # the best BM25 match, but unjudged
            "ocean heat content rises",
            "glacier mass balance in the alps",
            "arctic amplification warms the arctic faster",
            "sea level rise from ice sheets",
        ],
    }
)
POOL_QUERIES = pd.DataFrame({"query_id": ["q1", "q2", "q3"], "text": ["arctic sea ice", "glacier mass", "nothing judged"]})
# q1 judges d4 and d5 (no query term: score 0) and three matching documents; d3 stays unjudged.
POOL_QRELS = pd.DataFrame(
    {
        "query_id": ["q1", "q1", "q1", "q1", "q1", "q1", "q2", "q9"],
        "doc_id": ["d5", "d7", "d1", "d4", "d6", "d1", "d5", "d1"],
        "relevance": [0, 1, 2, 0, 1, 2, 1, 1],
    }
)


def test_judged_pool_holds_exactly_the_judged_documents_in_bm25_order():
    index = bm25_index(POOL_CORPUS, k1=1.2, b=0.75, stemmer=None, stopwords=None)
    run = judged_candidates(index, POOL_QUERIES, POOL_QRELS)
    # Expected order from a second implementation: rank-bm25 with the same k1, b and idf.
    reference = LuceneBM25([t.split() for t in POOL_CORPUS.text], k1=1.2, b=0.75)
    scores = dict(zip(POOL_CORPUS.doc_id, reference.get_scores("arctic sea ice".split())))
    judged = ["d1", "d4", "d5", "d6", "d7"]
    expected = sorted(judged, key=lambda d: (-scores[d], d))
    # By hand: d1 holds all three terms, d7 two ("sea", "ice"), d6 one ("arctic", twice);
    # d4 and d5 share no term (score 0) and follow in doc_id order.
    assert expected == ["d1", "d7", "d6", "d4", "d5"]
    q1 = run[run.query_id == "q1"]
    assert q1.doc_id.tolist() == expected
    # Lucene's BM25 (bm25s) leaves out the constant factor (k1 + 1) of the classic formula.
    assert (q1.score * 2.2).tolist() == pytest.approx([scores[d] for d in expected], rel=1e-5)
    assert q1["rank"].tolist() == [1, 2, 3, 4, 5]
    # q2's single judged document; q3 has no judgements and q9 is not a query: no rows.
    assert run[run.query_id == "q2"].doc_id.tolist() == ["d5"]
    assert set(run.query_id) == {"q1", "q2"}
    assert set(run.method) == {"bm25"} and set(run.budget) == {"0"}
    # The BM25 top-k pool differs: it holds the unjudged d3 first and drops the zero scores.
    top = bm25_candidates(index, POOL_QUERIES[POOL_QUERIES.query_id == "q1"], k=7)
    assert top.doc_id.iloc[0] == "d3" and "d4" not in set(top.doc_id)


def test_judged_pool_refuses_judgements_of_unknown_documents():
    index = bm25_index(POOL_CORPUS, stemmer=None, stopwords=None)
    qrels = pd.DataFrame({"query_id": ["q1"], "doc_id": ["d99"], "relevance": [1]})
    with pytest.raises(ValueError, match="not in the corpus, e.g. 'd99'"):
        judged_candidates(index, POOL_QUERIES, qrels)
