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
- stuffing also ``overtake_before`` / ``overtake_after``: the share of (relevant head
  document, stuffed document) pairs of the query where the stuffed document outscores the
  relevant one (ties count one half), before and after the stuffing; NaN without a relevant
  head document.

Which documents each probe edits, per query ("relevant": relevance >= ``relevance_threshold``;
"non-relevant": judged, below it; with ``max_documents``, the first that many by rank):

- ``stuffing``: the head's judged non-relevant documents; without one, its lowest-ranked
  document not judged relevant;
- ``shuffle``, ``repetition``: every head document;
- ``distractor``: every head document, with a sentence (seeded choice) from a document judged
  relevant to another of the given queries, neither judged for nor in the head of this one,
  that shares no word with this query, nor a part of one ("sea-level": sea, level), but
  words that both ``text.words`` and BM25 (bm25s, English) count as stop words
  (documents of a query without such a sentence: skipped);
- ``marker``: the head's documents not judged relevant that do not carry the marker;
- ``stance`` (no edit; qrels with a ``label`` column): the query's relevant documents
  labelled SUPPORTS and REFUTES, in queries with both; delta = (mean SUPPORTS score - mean
  REFUTES score) / spread over the SUPPORTS x REFUTES pairs (``n_pairs``).

An edit that leaves the document's words as they are (a one-word document shuffled, a query
with no content word stuffed) is not a probed pair; ``max_documents`` counts the changed ones.

Edits are seeded per pair (``pair_seed`` of the seed and the pair's texts; the marker at the
position a control with that seed would give the document), so results do not depend on the
order of queries or documents.
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from bm25s.stopwords import STOPWORDS_EN

from rerank_audit.explain.faithfulness import candidate_spreads, pair_seed
from rerank_audit.explain.score_cache import ScoreCache, cached_scores
from rerank_audit.models.scorer import Scorer
from rerank_audit.probe.edits import (
    append_distractor,
    insert_marker_word,
    repeat_document,
    sentences,
    shuffle_words,
    stuff_query_words,
)
from rerank_audit.text.prompts import corpus_texts
from rerank_audit.text.words import STOP_WORDS, bare_word, split_words, word_key

log = logging.getLogger(__name__)
_NON_WORD = re.compile(r"[\W_]+")

PROBES = ("stuffing", "shuffle", "repetition", "distractor", "stance", "marker")
STANCE_LABELS = ("SUPPORTS", "REFUTES")
PROBE_COLUMNS = ["method", "budget", "probe", "query_id", "n_pairs", "spread", "delta", "overtake_before", "overtake_after"]


def applicable_probes(qrels: pd.DataFrame, marker: str | None = None) -> list[str]:
    """The probes a dataset supports: the edits, stance where the qrels label SUPPORTS / REFUTES, marker with a control's marker."""
    labelled = "label" in qrels and qrels.label.isin(STANCE_LABELS).any()
    return [p for p in PROBES if (p != "stance" or labelled) and (p != "marker" or marker)]


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
    spreads; the overtake shares 0-1, NaN outside stuffing), probes in the order given.
    """
    probes = applicable_probes(qrels, marker) if probes is None else list(probes)
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {unknown}; known: {list(PROBES)}")
    if "marker" in probes and not marker:
        raise ValueError("the marker probe needs the control's marker word")
    if "stance" in probes and "label" not in qrels:
        raise ValueError("the stance probe needs qrels with a label column (CLIMATE-FEVER's evidence labels)")
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
        if probe == "stance":
            table = _stance(scorer, pool, qrels, relevance_threshold, corpus, cache)
        else:
            edit = _changed(probe, _EDITS[probe](pool, seed=seed, marker=marker, corpus=corpus, qrels=qrels, threshold=relevance_threshold))
            table = _edit_responses(scorer, probe, _first(edit, max_documents), pool, cache)
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


def _stuffing(pool: pd.DataFrame, **_) -> pd.DataFrame:
    non_relevant = pool[pool.judged & ~pool.relevant]
    # Queries with no judged non-relevant document: their lowest-ranked document not judged relevant.
    fallback = pool[~pool.relevant & ~pool.query_id.isin(non_relevant.query_id)].groupby("query_id", sort=False).tail(1)
    chosen = pd.concat([non_relevant, fallback]).sort_values(["query_id", "rank"], kind="stable")
    return chosen.assign(edited=[stuff_query_words(d, q) for d, q in zip(chosen.document, chosen.query_text)])


def _shuffle(pool: pd.DataFrame, seed: int, **_) -> pd.DataFrame:
    return pool.assign(edited=[shuffle_words(d, pair_seed(seed, q, d)) for d, q in zip(pool.document, pool.query_text)])


def _repetition(pool: pd.DataFrame, **_) -> pd.DataFrame:
    return pool.assign(edited=[repeat_document(d) for d in pool.document])


def _marker(pool: pd.DataFrame, seed: int, marker: str, **_) -> pd.DataFrame:
    key = word_key(marker)
    # A document that already carries the marker (a control's planted copy) cannot gain it.
    carries = np.array([key in {word_key(w) for w in d.split()} for d in pool.document], dtype=bool)
    without = pool[~pool.relevant.to_numpy() & ~carries]
    return without.assign(edited=[insert_marker_word(d, marker, seed, i) for d, i in zip(without.document, without.doc_id)])


def _distractor(pool: pd.DataFrame, seed: int, corpus: pd.DataFrame, qrels: pd.DataFrame, threshold: int, **_) -> pd.DataFrame:
    query_ids = set(pool.query_id)
    relevant = qrels[(qrels.relevance >= threshold) & qrels.query_id.isin(query_ids)][["query_id", "doc_id"]]
    body = corpus.set_index("doc_id").text
    # Every sentence of a source document once, with its content-word keys.
    source = [
        (doc_id, sentence, _topic_keys(sentence))
        for doc_id in dict.fromkeys(relevant.doc_id)
        for sentence in sentences(str(body.get(doc_id, "") or ""))
    ]
    relevant_to = relevant.groupby("doc_id").query_id.agg(set).to_dict()
    seen = pd.concat([qrels[["query_id", "doc_id"]], pool[["query_id", "doc_id"]]]).groupby("query_id").doc_id.agg(set).to_dict()
    edited = []
    for query_id, group in pool.groupby("query_id", sort=False):
        query = group.query_text.iloc[0]
        query_keys = _topic_keys(query)
        candidates = [
            sentence
            for doc_id, sentence, keys in source
            if relevant_to[doc_id] - {query_id} and doc_id not in seen.get(query_id, ()) and not keys & query_keys
        ]
        edited += [append_distractor(d, candidates, pair_seed(seed, query, d)) for d in group.document]
    return pool.assign(edited=edited).dropna(subset=["edited"])


# Words a distractor may share with the query: function words for the explanations' list and
# for BM25's English stop words alike, so the sentence adds no term that BM25 (the reference) indexes.
_SHARED_STOP_WORDS = STOP_WORDS & frozenset(STOPWORDS_EN)


def _topic_keys(text: str) -> set[str]:
    """Keys of the words of ``text`` but ``_SHARED_STOP_WORDS``, also of the parts of words joined by punctuation ("sea-level": sea, level)."""
    words = [w for w in split_words(text) + split_words(_NON_WORD.sub(" ", text)) if bare_word(w) not in _SHARED_STOP_WORDS]
    return {key for key in map(word_key, words) if key}


_EDITS: dict[str, Callable[..., pd.DataFrame]] = {
    "stuffing": _stuffing, "shuffle": _shuffle, "repetition": _repetition, "distractor": _distractor, "marker": _marker,
}  # fmt: skip


def _outranks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where a > b, 0.5 where equal, 0 below."""
    return (a > b) + 0.5 * (a == b)


def _edit_responses(scorer: Scorer, probe: str, edits: pd.DataFrame, pool: pd.DataFrame, cache: ScoreCache) -> pd.DataFrame:
    """Per query: n_pairs, difference (mean edited - original, raw units) and, for stuffing, the overtake shares."""
    relevant = pool[pool.relevant & pool.query_id.isin(edits.query_id)] if probe == "stuffing" else pool.iloc[:0]
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
    if probe == "stuffing" and len(relevant):
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
