"""Re-ranking re-orders the head by the scorer and keeps the first-stage tail beneath it."""

import numpy as np
import pandas as pd

from rerank_audit.rerank import rerank_candidates


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
