"""Ranking measures with ir-measures, per query, over a fixed set of evaluated queries."""

from __future__ import annotations

import ir_measures
import pandas as pd

from rerank_audit.rerank import RANDOM_METHOD, random_reordering

DEFAULT_MEASURES = ("nDCG@10", "nDCG@5", "RR@10", "AP", "P@5", "R@20", "R@100", "Judged@10")


def parse_measures(names: list[str], relevance_threshold: int) -> dict[str, object]:
    """Map each configured name to an ir-measures measure.

    Binary measures (RR, AP, P, R) count a document as relevant at ``relevance_threshold``
    unless the name sets ``rel`` itself; nDCG keeps the graded gains. The dict keys stay the
    configured names so tables read as the user wrote them.
    """
    measures = {}
    for name in names:
        measure = ir_measures.parse_measure(name)
        if "rel" in measure.SUPPORTED_PARAMS and "rel" not in measure.params:
            measure = measure(rel=relevance_threshold)
        measures[name] = measure
    return measures


def per_query_measures(run: pd.DataFrame, qrels: pd.DataFrame, query_ids: list[str], measures: dict[str, object]) -> pd.DataFrame:
    """(query_id, measure, value) for every query in ``query_ids`` and every measure.

    A query the run retrieved nothing for scores 0 on every measure (trec_eval would drop it
    and inflate the mean).
    """
    qrels = qrels[qrels.query_id.isin(query_ids)]
    run = run[run.query_id.isin(query_ids)][["query_id", "doc_id", "score"]]
    by_measure = {measure: name for name, measure in measures.items()}
    rows = [
        (m.query_id, by_measure[m.measure], float(m.value))
        for m in ir_measures.iter_calc(list(measures.values()), qrels, run)
    ]
    found = pd.DataFrame(rows, columns=["query_id", "measure", "value"])
    grid = pd.MultiIndex.from_product([sorted(query_ids), list(measures)], names=["query_id", "measure"])
    return found.set_index(["query_id", "measure"]).reindex(grid, fill_value=0.0).reset_index()


def evaluate_run(run: pd.DataFrame, qrels: pd.DataFrame, query_ids: list[str], measures: dict[str, object], dataset: str, scope: str) -> pd.DataFrame:
    """The per-query metrics table (data model) of one run over the queries of ``scope``."""
    table = per_query_measures(run, qrels, query_ids, measures)
    labels = {"dataset": dataset, "method": run.method.iloc[0], "budget": run.budget.iloc[0], "split": scope}
    return table.assign(**labels)[["dataset", "method", "budget", "split", "query_id", "measure", "value"]]


def evaluate_random_reordering(
    first_stage: pd.DataFrame, qrels: pd.DataFrame, query_ids: list[str], measures: dict[str, object], depth: int, seeds: int, dataset: str, scope: str
) -> pd.DataFrame:
    """The per-query metrics of the "random" control: each value is the mean over ``seeds``
    random re-orderings (seeds 0 .. seeds - 1) of the first stage's top-``depth`` head, the
    part a re-ranker re-orders (``rerank.random_reordering``).

    An estimate of the expected value of each measure under a uniformly random order of the
    head, so a method can be tested against it query by query. Same columns as ``evaluate_run``.
    """
    if seeds < 1:
        raise ValueError(f"the random control needs at least one seed, got {seeds}")
    first_stage = first_stage[first_stage.query_id.isin(query_ids)]
    runs = [evaluate_run(random_reordering(first_stage, depth, seed), qrels, query_ids, measures, dataset, scope) for seed in range(seeds)]
    keys = ["dataset", "method", "budget", "split", "query_id", "measure"]
    mean = pd.concat(runs, ignore_index=True).groupby(keys, sort=False).value.mean().reset_index()
    return mean.assign(method=RANDOM_METHOD)


def aggregate(per_query: pd.DataFrame) -> pd.DataFrame:
    """Mean of each measure per (dataset, method, budget, split), with the number of queries."""
    keys = ["dataset", "method", "budget", "split", "measure"]
    return per_query.groupby(keys, sort=False).value.agg(value="mean", queries="count").reset_index()
