"""How a method's score responds to each shortcut probe, per test query.

In: a scorer (anything with ``score_pairs``, BM25 included: ``retrieval.bm25_scorer``), the
test queries, the corpus, the method's re-ranked head (its run on those queries) and the
qrels. Per probe, every probed (query, document) pair is scored as it is and as edited
(``edits``), both in one ``score_pairs`` call per probe (through a score cache: a pair
scored by an earlier probe is not scored again), and reduced per query:

- ``delta``: the mean over the query's probed documents of score(edited) - score(original),
  in units of the query's candidate spread (``explain.faithfulness.candidate_spreads``: the
  population std of the method's scores over the query's re-ranked head), so methods on
  different score scales compare; NaN where every candidate scores the same;
- ``overtake_before`` / ``overtake_after`` (stuffing and the other probes that edit
  non-relevant documents): the share of (relevant head document, edited document) pairs of the
  query where the edited document outscores the relevant one (ties count one half), before and
  after the edit; NaN without a relevant head document, and for the other probes.

Which documents each probe edits, per query ("relevant": relevance >= ``relevance_threshold``;
"non-relevant": judged, below it; with ``max_documents``, the first that many by rank): its
registry entry's probed pairs (``probe.registry``, ``probe.pairs``). The stance probe (no
edit; qrels with a ``label`` column) takes the query's relevant documents labelled SUPPORTS and
REFUTES, in queries with both; delta = (mean SUPPORTS score - mean REFUTES score) / spread over
the SUPPORTS x REFUTES pairs (``n_pairs``).

An edit that leaves the document's words as they are (a one-word document shuffled, a query
with no content word stuffed) is not a probed pair; ``max_documents`` counts the changed ones.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from rerank_audit.explain.faithfulness import candidate_spreads
from rerank_audit.explain.score_cache import ScoreCache, cached_scores
from rerank_audit.models.scorer import Scorer
from rerank_audit.probe.registry import REGISTRY, STANCE_LABELS, check_probes
from rerank_audit.text.prompts import corpus_texts
from rerank_audit.text.words import split_words

log = logging.getLogger(__name__)

PROBE_COLUMNS = ["method", "budget", "probe", "query_id", "n_pairs", "spread", "delta", "overtake_before", "overtake_after"]


def applicable_probes(qrels: pd.DataFrame, marker: str | None = None) -> list[str]:
    """The probes a dataset supports, in registry order: those that need nothing, stance where the qrels
    label SUPPORTS / REFUTES, marker with a control's marker (``Probe.applies``)."""
    return [name for name, entry in REGISTRY.items() if entry.applies(qrels, marker)]


def probe_responses(
    scorer: Scorer,
    queries: pd.DataFrame,
    corpus: pd.DataFrame,
    head: pd.DataFrame,
    qrels: pd.DataFrame,
    *,
    method: str,
    budget: str,
    probes: Sequence[str] | None = None,
    relevance_threshold: int = 1,
    seed: int = 0,
    marker: str | None = None,
    max_documents: int | None = None,
    cache: ScoreCache | None = None,
) -> pd.DataFrame:
    """One row per (probe, query) with a probed pair: the per-query responses (module docstring).

    ``queries``: the test queries (query_id, text); ``corpus``: doc_id, title, text;
    ``head``: the method's re-ranked head (query_id, doc_id, score, rank; rows of other
    queries are ignored), its scores in the units of ``scorer``; ``qrels``: query_id, doc_id,
    relevance (and label for stance). ``probes``: default ``applicable_probes``; ``marker``:
    the control's marker word (needed by, and only by, ``marker``); ``cache``: this scorer's
    score cache. Returns ``PROBE_COLUMNS`` (n_pairs int64; spread in raw score units; delta in
    spreads; the overtake shares 0-1, NaN but for the probes with ``overtake``), probes in the order given.
    """
    probes = applicable_probes(qrels, marker) if probes is None else list(probes)
    check_probes(probes, where="probes")
    lacking = [name for name in probes if not REGISTRY[name].applies(qrels, marker)]
    if lacking:
        raise ValueError(f"the {lacking[0]} probe needs {REGISTRY[lacking[0]].needs}, which these inputs lack")
    cache = {} if cache is None else cache
    query_text = queries.drop_duplicates("query_id").set_index("query_id").text
    pool = _judged_head(head[head.query_id.isin(query_text.index)], qrels, relevance_threshold)
    spreads = candidate_spreads(pool)
    flat = sorted(spreads.index[~(spreads > 0)])
    if flat:
        log.warning("%s %s: the candidates of query_id(s) %s all score the same; their deltas are NaN", method, budget, flat[:5])
    pool["document"] = corpus_texts(corpus, pool.doc_id)
    pool["query_text"] = query_text.reindex(pool.query_id).to_numpy()

    frames = []
    for probe in probes:
        entry = REGISTRY[probe]
        if entry.pairs is None:
            table = _stance(scorer, pool, qrels, relevance_threshold, corpus, cache)
        else:
            edit = _changed(probe, entry.pairs(pool, seed=seed, marker=marker, corpus=corpus, qrels=qrels, threshold=relevance_threshold))
            table = _edit_responses(scorer, _first(edit, max_documents), pool, cache, overtake=entry.overtake)
        log.info("%s %s probe %s: %d queries, %d pairs", method, budget, probe, len(table), int(table.n_pairs.sum()))
        frames.append(table.assign(probe=probe))
    if not frames:
        return pd.DataFrame(columns=PROBE_COLUMNS).astype({"n_pairs": "int64"})
    result = pd.concat(frames, ignore_index=True)
    result["spread"] = spreads.reindex(result.query_id).to_numpy(dtype=np.float64)
    result["delta"] = result["difference"] / result.spread.where(result.spread > 0)
    return result.assign(method=method, budget=budget)[PROBE_COLUMNS].astype({"n_pairs": "int64"})


def probe_head(first_stage: pd.DataFrame, scores: pd.DataFrame, depth: int) -> pd.DataFrame:
    """The head ``probe_responses`` edits: each query's first ``depth`` first-stage candidates,
    ranked as the first stage ranks them, scored as the method scores them.

    ``first_stage``: the BM25 run (query_id, doc_id, rank); ``scores``: the method's run of the
    same candidates (query_id, doc_id, score; its re-ranked head, as ``rerank_candidates``
    writes it). Only the queries of ``scores`` are kept. The first-stage rank, not the
    method's, orders the documents, so ``max_documents`` and the stuffing fallback pick the same
    documents for every method and the methods' responses pair up document by document.
    Returns query_id, doc_id, score (float64), rank (int64); ValueError when ``scores`` lacks a
    head document of one of its queries.
    """
    head = first_stage[(first_stage["rank"] <= depth) & first_stage.query_id.isin(scores.query_id)][["query_id", "doc_id", "rank"]]
    head = head.merge(scores[["query_id", "doc_id", "score"]], on=["query_id", "doc_id"], how="left")
    missing = head[head.score.isna()]
    if len(missing):
        raise ValueError(
            f"the method's run has no score for {len(missing)} of the first {depth} first-stage candidates, e.g. "
            f"query {missing.query_id.iloc[0]!r}, document {missing.doc_id.iloc[0]!r}: was it re-ranked at another rerank.depth?"
        )
    return head.astype({"score": "float64", "rank": "int64"}).reset_index(drop=True)


def _judged_head(head: pd.DataFrame, qrels: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """``head`` ordered by query and rank, with judged (bool) and relevant (bool) per row."""
    grades = qrels[["query_id", "doc_id", "relevance"]].drop_duplicates(["query_id", "doc_id"])
    pool = head[["query_id", "doc_id", "score", "rank"]].merge(grades, on=["query_id", "doc_id"], how="left")
    pool["judged"] = pool.relevance.notna()
    pool["relevant"] = pool.relevance >= threshold
    return pool.sort_values(["query_id", "rank"], kind="stable").reset_index(drop=True)


def _changed(probe: str, edits: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``edits`` whose edit changes the document's words (a one-word document shuffled, a
    query without content words stuffed, change nothing: a Δ of 0 there would measure no response)."""
    changed = np.array([split_words(e) != split_words(d) for e, d in zip(edits.edited, edits.document)], dtype=bool)
    if not changed.all():
        log.info("probe %s: %d edit(s) leave the document's words as they are; not probed", probe, int((~changed).sum()))
    return edits[changed]


def _first(pairs: pd.DataFrame, max_documents: int | None) -> pd.DataFrame:
    """The first ``max_documents`` probed documents of each query (all with None)."""
    return pairs if max_documents is None else pairs.groupby("query_id", sort=False).head(max_documents)


def _outranks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where a > b, 0.5 where equal, 0 below."""
    return (a > b) + 0.5 * (a == b)


def _edit_responses(scorer: Scorer, edits: pd.DataFrame, pool: pd.DataFrame, cache: ScoreCache, overtake: bool) -> pd.DataFrame:
    """Per query: n_pairs, difference (mean edited - original, raw units) and, with ``overtake``, the overtake shares."""
    relevant = pool[pool.relevant & pool.query_id.isin(edits.query_id)] if overtake else pool.iloc[:0]
    n = len(edits)
    scores = cached_scores(
        scorer,
        [*edits.query_text, *edits.query_text, *relevant.query_text],
        [*edits.document, *edits.edited, *relevant.document],
        cache,
    )
    edits = edits.assign(original_score=scores[:n], edited_score=scores[n : 2 * n])
    edits["change"] = edits.edited_score - edits.original_score
    table = edits.groupby("query_id", sort=False).agg(n_pairs=("change", "size"), difference=("change", "mean")).reset_index()
    table["overtake_before"] = table["overtake_after"] = np.nan
    if overtake and len(relevant):
        crossed = edits.merge(relevant.assign(relevant_score=scores[2 * n :])[["query_id", "relevant_score"]], on="query_id")
        crossed["before"] = _outranks(crossed.original_score.to_numpy(), crossed.relevant_score.to_numpy())
        crossed["after"] = _outranks(crossed.edited_score.to_numpy(), crossed.relevant_score.to_numpy())
        shares = crossed.groupby("query_id")[["before", "after"]].mean()
        table["overtake_before"] = table.query_id.map(shares.before)
        table["overtake_after"] = table.query_id.map(shares.after)
    return table


def _stance(scorer: Scorer, pool: pd.DataFrame, qrels: pd.DataFrame, threshold: int, corpus: pd.DataFrame, cache: ScoreCache) -> pd.DataFrame:
    """Per query with relevant SUPPORTS and REFUTES evidence: n_pairs (S x R) and difference (mean S - mean R, raw units)."""
    query_text = pool.drop_duplicates("query_id").set_index("query_id").query_text
    evidence = qrels[qrels.query_id.isin(query_text.index) & (qrels.relevance >= threshold) & qrels.label.isin(STANCE_LABELS)]
    evidence = evidence.drop_duplicates(["query_id", "doc_id"])
    both = evidence.groupby("query_id").label.nunique() == len(STANCE_LABELS)
    evidence = evidence[evidence.query_id.map(both)]
    if evidence.empty:
        return pd.DataFrame(columns=["query_id", "n_pairs", "difference", "overtake_before", "overtake_after"])
    scores = cached_scores(scorer, list(query_text[evidence.query_id]), corpus_texts(corpus, evidence.doc_id), cache)
    means = evidence.assign(score=scores).pivot_table(index="query_id", columns="label", values="score", aggfunc=["mean", "size"])
    supports, refutes = STANCE_LABELS
    table = pd.DataFrame(
        {
            "query_id": means.index,
            "n_pairs": (means["size", supports] * means["size", refutes]).to_numpy(),
            "difference": (means["mean", supports] - means["mean", refutes]).to_numpy(),
        }
    )
    return table.assign(overtake_before=np.nan, overtake_after=np.nan)
