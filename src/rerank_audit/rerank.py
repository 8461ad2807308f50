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
from rerank_audit.models.prompts import corpus_texts
from rerank_audit.models.scorer import Scorer

log = logging.getLogger(__name__)

RANDOM_METHOD = "random"
FUSED_SUFFIX = "+bm25"
# Weight of BM25 in a fused score when the config names none (Zhuang et al. 2023, llm-qlm).
DEFAULT_FUSION_WEIGHT = 0.2


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


def fusion_settings(rerank: dict, methods: list[str]) -> tuple[float, list[str]]:
    """(BM25 weight, fused methods) of the ``rerank`` config section.

    ``rerank.fusion`` is a list of methods (weight ``rerank.fusion_weight``, default
    ``DEFAULT_FUSION_WEIGHT``) or ``{weight, methods}``; absent: no fusion. Every fused
    method must be one of ``methods`` (the config's); the error names the key and the fix.
    """
    fusion = rerank.get("fusion") or []
    weight = rerank.get("fusion_weight", DEFAULT_FUSION_WEIGHT)
    if isinstance(fusion, dict):
        if "fusion_weight" in rerank and "weight" in fusion:
            raise ValueError("rerank.fusion.weight and rerank.fusion_weight both set; keep one")
        weight, fusion = fusion.get("weight", weight), fusion.get("methods", [])
    unknown = [m for m in fusion if m not in methods]
    if unknown:
        raise ValueError(f"rerank.fusion names {unknown}, which are not in methods ({methods}); add them to methods or remove them from rerank.fusion")
    return float(weight), list(dict.fromkeys(fusion))


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
# ingested queries and qrels, hence the split, must be the same; and the query-likelihood
# template, the prompt qlm_sft was trained on (compared with its default filled in).
SHARED_WITH_MODELS = ("format", "sources", "options", "relevance_threshold", "qlm_template")


def qlm_template(spec: dict) -> str:
    """A dataset's query-likelihood template: ``qlm_template``, else the scorer's default."""
    # imported here: evaluation reads this module and needs no torch
    from rerank_audit.models.scoring.likelihood import DEFAULT_QLM_TEMPLATE

    return spec.get("qlm_template", DEFAULT_QLM_TEMPLATE)


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
            value = qlm_template if field == "qlm_template" else (lambda s, f=field: s.get(f))
            mine, theirs = value(spec), value(datasets[other])
            if mine != theirs:
                raise ValueError(
                    f"{key}: {name!r} re-ranks with the models trained on {other!r}, but datasets.{name}.{field} ({mine!r}) differs "
                    f"from datasets.{other}.{field} ({theirs!r}); make them equal, or remove models_from to train on {name!r} itself"
                )
