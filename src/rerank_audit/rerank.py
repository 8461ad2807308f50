"""Stage 5: re-rank the head of each query's first-stage run with a method's scorer.

The head is the top ``depth`` of the first stage (the BM25 top-N, or the whole judged pool
when it has at most ``depth`` documents); ``random_reordering`` shuffles the same head, the
control every method is compared with; ``fuse_with_first_stage`` mixes a method's head
scores with the first stage's (the ``<method>+bm25`` rows).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.text.prompts import corpus_texts
from rerank_audit.models.scorer import Scorer

log = logging.getLogger(__name__)

RANDOM_METHOD = "random"
FUSED_SUFFIX = "+bm25"


def rerank_candidates(scorer: Scorer, first_stage: pd.DataFrame, queries: pd.DataFrame, corpus: pd.DataFrame, depth: int, method: str, budget: str) -> pd.DataFrame:
    """Score the top-``depth`` candidates of every query in ``first_stage`` and re-order them.

    All pairs go to the scorer in one call, so it can batch and share prompt prefixes
    across a query's candidates. Candidates below ``depth`` keep their first-stage order
    beneath the re-ranked head, so recall at deeper cut-offs stays comparable with BM25.
    Returns a run (query_id, doc_id, score, rank, method, budget); tail scores are set below
    every head score of their query.
    """
    head, tail = _head_and_tail(first_stage, depth)
    texts = queries.set_index("query_id").text
    documents = corpus_texts(corpus, head.doc_id)
    log.info("scoring %d pairs of %d queries", len(head), head.query_id.nunique())
    head["score"] = np.asarray(scorer.score_pairs(texts.reindex(head.query_id).tolist(), documents), dtype="float64")
    return _reordered(head, tail, method, str(budget))


def random_reordering(first_stage: pd.DataFrame, depth: int, seed: int) -> pd.DataFrame:
    """``first_stage`` with each query's top-``depth`` head in a uniformly random order.

    The tail stays beneath in first-stage order, exactly as ``rerank_candidates`` leaves it,
    so the run differs from a re-ranker's only in how the head is ordered. One stream of
    ``numpy.random.default_rng(seed)`` gives every head row an independent uniform key (ties
    have probability 0), so each query's order is uniform; it depends on the seed and on the
    frame's rows. Returns a run with method "random", budget "0".
    """
    head, tail = _head_and_tail(first_stage, depth)
    head["score"] = np.random.default_rng(seed).random(len(head))
    return _reordered(head, tail, RANDOM_METHOD, UNTRAINED_BUDGET)


def _min_max(scores: pd.Series, query_ids: pd.Series) -> np.ndarray:
    """Per query, (score − min) / (max − min); 0 where a query's scores are all equal."""
    grouped = scores.groupby(query_ids)
    low, high = grouped.transform("min"), grouped.transform("max")
    spread = (high - low).to_numpy()
    return np.divide((scores - low).to_numpy(), spread, out=np.zeros(len(scores)), where=spread > 0)


def fuse_with_first_stage(run: pd.DataFrame, first_stage: pd.DataFrame, depth: int, weight: float) -> pd.DataFrame:
    """A method's run re-ordered by (1 − ``weight``)·method + ``weight``·first stage, both min-max normalised per query.

    ``run``: a re-ranker's run (query_id, doc_id, score, rank, method, budget) over the
    top-``depth`` head of ``first_stage`` (the BM25 run, scores in ``score``). Only the head
    is fused (the documents the method scored); the tail stays beneath in first-stage order,
    as in ``rerank_candidates``. Returns a run named ``<method>+bm25`` with the method's
    budget; fused scores lie in [0, 1].
    """
    head, tail = _head_and_tail(first_stage[first_stage.query_id.isin(run.query_id)], depth)
    method_scores = run.set_index(["query_id", "doc_id"]).score
    keys = pd.MultiIndex.from_frame(head[["query_id", "doc_id"]])
    missing = ~keys.isin(method_scores.index)
    if missing.any():
        raise ValueError(
            f"the {run.method.iloc[0]} run lacks {int(missing.sum())} head candidate(s) of the first stage, e.g. "
            f"{keys[missing][0]}; re-rank with the same first stage and rerank.depth"
        )
    own = pd.Series(method_scores.reindex(keys).to_numpy(), index=head.index)
    head["score"] = (1 - weight) * _min_max(own, head.query_id) + weight * _min_max(head.score, head.query_id)
    return _reordered(head, tail, run.method.iloc[0] + FUSED_SUFFIX, str(run.budget.iloc[0]))


def judged_head(run: pd.DataFrame, qrels: pd.DataFrame, depth: int, relevance_threshold: int) -> pd.DataFrame:
    """The judged documents of each query's top-``depth`` head of ``run``, with their scores and labels.

    ``run``: a first-stage or re-ranked run (a re-ranker's head fills its top ``depth`` ranks,
    so both give the same documents, each with its own scores); ``qrels``: QRELS rows.
    Unjudged documents are left out (their relevance is unknown). Returns the run's columns
    for those documents and ``relevant`` (relevance >= ``relevance_threshold``).
    """
    head, _ = _head_and_tail(run, depth)
    judged = head.merge(qrels[["query_id", "doc_id", "relevance"]], on=["query_id", "doc_id"], how="inner")
    return judged.assign(relevant=judged.pop("relevance") >= relevance_threshold).reset_index(drop=True)


def _head_and_tail(first_stage: pd.DataFrame, depth: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    run = first_stage.sort_values(["query_id", "rank"])
    return run[run["rank"] <= depth].copy(), run[run["rank"] > depth].copy()


def _reordered(head: pd.DataFrame, tail: pd.DataFrame, method: str, budget: str) -> pd.DataFrame:
    """The scored head in score order (ties by doc_id), the tail beneath it in first-stage order, ranked."""
    head = head.sort_values(["query_id", "score", "doc_id"], ascending=[True, False, True])
    floor = head.groupby("query_id").score.min()
    # The tail keeps BM25 order: rank-based scores strictly below the head's minimum.
    tail["score"] = floor.reindex(tail.query_id).to_numpy() - tail["rank"].to_numpy(dtype="float64")
    ranked = pd.concat([head, tail], ignore_index=True)
    ranked["rank"] = ranked.groupby("query_id", sort=False).cumcount().astype("int64") + 1
    ranked["method"], ranked["budget"] = method, budget
    return ranked[["query_id", "doc_id", "score", "rank", "method", "budget"]].reset_index(drop=True)
