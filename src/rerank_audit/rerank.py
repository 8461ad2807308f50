"""Stage 5: re-rank the head of each query's first-stage run with a method's scorer.

The head is the top ``depth`` of the first stage (the BM25 top-N, or the whole judged pool
when it has at most ``depth`` documents); ``random_reordering`` shuffles the same head, the
control every method is compared with.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.models.prompts import corpus_texts
from rerank_audit.models.scorer import Scorer

log = logging.getLogger(__name__)

RANDOM_METHOD = "random"


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
    so the run differs from a re-ranker's only in how the head is ordered. Each query's
    permutation comes from ``numpy.random.default_rng(seed)`` (independent uniform keys, so
    ties have probability 0). Returns a run with method "random", budget "0".
    """
    head, tail = _head_and_tail(first_stage, depth)
    head["score"] = np.random.default_rng(seed).random(len(head))
    return _reordered(head, tail, RANDOM_METHOD, UNTRAINED_BUDGET)


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


def check_test_queries_unseen(splits: pd.DataFrame, model_splits: pd.DataFrame, models_from: str) -> None:
    """Raise if a test query of ``splits`` is a training query of ``model_splits``.

    A dataset with ``models_from`` re-ranks with models trained on that other dataset's
    training queries; a test query among them would be scored by a model that saw its
    judgements. Both frames: (query_id, split, position).
    """
    test = set(splits.query_id[splits.split == "test"])
    seen = sorted(test & set(model_splits.query_id[model_splits.split == "train"]))
    if seen:
        raise ValueError(
            f"{len(seen)} test query(ies) of this dataset, e.g. {seen[0]!r}, are training queries of dataset {models_from!r}, "
            f"whose models it re-uses (models_from); give both datasets the same queries, qrels and relevance_threshold"
        )


# Keys a dataset must share with the dataset whose models it re-uses (models_from): the
# ingested queries and qrels, hence the split, must be the same.
SHARED_WITH_MODELS = ("format", "sources", "options", "relevance_threshold")


def check_models_from(datasets: dict[str, dict]) -> None:
    """Raise unless every dataset's ``models_from`` names another dataset with the same data.

    ``datasets``: the config's ``datasets`` mapping (name -> spec). The named dataset must
    exist, train its own models (no chain) and agree on ``SHARED_WITH_MODELS`` and on its
    ``control`` entry except the version (an aligned/flipped control pair); the error names
    the config key and the fix.
    """
    for name, spec in datasets.items():
        other = spec.get("models_from")
        if other is None:
            continue
        key = f"datasets.{name}.models_from"
        if other not in datasets or other == name:
            raise ValueError(f"{key}: {other!r} is not another dataset of this config ({', '.join(datasets)}); name one of them or remove the key")
        if datasets[other].get("models_from") is not None:
            raise ValueError(f"{key}: {other!r} itself re-uses the models of {datasets[other]['models_from']!r}; name that dataset instead")
        # A control pair (aligned, flipped) shares its models: everything but the version agrees.
        mine_control, their_control = ({k: v for k, v in (s.get("control") or {}).items() if k != "version"} for s in (spec, datasets[other]))
        if mine_control != their_control:
            raise ValueError(
                f"{key}: datasets.{name}.control ({spec.get('control')!r}) and datasets.{other}.control "
                f"({datasets[other].get('control')!r}) must differ at most in version (the same marker in the same training "
                f"documents); make them equal, or remove models_from"
            )
        for field in SHARED_WITH_MODELS:
            mine, theirs = spec.get(field), datasets[other].get(field)
            if mine != theirs:
                raise ValueError(
                    f"{key}: {name!r} re-ranks with the models trained on {other!r}, but datasets.{name}.{field} ({mine!r}) differs "
                    f"from datasets.{other}.{field} ({theirs!r}); make them equal, or remove models_from to train on {name!r} itself"
                )
