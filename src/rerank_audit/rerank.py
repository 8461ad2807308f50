"""Stage 5: re-rank the BM25 top-N of each query with a method's scorer."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from rerank_audit.models.prompts import corpus_texts
from rerank_audit.models.scorer import Scorer

log = logging.getLogger(__name__)


def rerank_candidates(scorer: Scorer, first_stage: pd.DataFrame, queries: pd.DataFrame, corpus: pd.DataFrame, depth: int, method: str, budget: str) -> pd.DataFrame:
    """Score the top-``depth`` candidates of every query in ``first_stage`` and re-order them.

    All pairs go to the scorer in one call, so it can batch and share prompt prefixes
    across a query's candidates. Candidates below ``depth`` keep their first-stage order
    beneath the re-ranked head, so recall at deeper cut-offs stays comparable with BM25.
    Returns a run (query_id, doc_id, score, rank, method, budget); tail scores are set below
    every head score of their query.
    """
    run = first_stage.sort_values(["query_id", "rank"])
    head, tail = run[run["rank"] <= depth].copy(), run[run["rank"] > depth].copy()
    texts = queries.set_index("query_id").text
    documents = corpus_texts(corpus, head.doc_id)
    log.info("scoring %d pairs of %d queries", len(head), head.query_id.nunique())
    head["score"] = np.asarray(scorer.score_pairs(texts.reindex(head.query_id).tolist(), documents), dtype="float64")
    head = head.sort_values(["query_id", "score", "doc_id"], ascending=[True, False, True])
    floor = head.groupby("query_id").score.min()
    # The tail keeps BM25 order: rank-based scores strictly below the head's minimum.
    tail["score"] = floor.reindex(tail.query_id).to_numpy() - tail["rank"].to_numpy(dtype="float64")
    ranked = pd.concat([head, tail], ignore_index=True)
    ranked["rank"] = ranked.groupby("query_id", sort=False).cumcount().astype("int64") + 1
    ranked["method"], ranked["budget"] = method, str(budget)
    return ranked[["query_id", "doc_id", "score", "rank", "method", "budget"]].reset_index(drop=True)
