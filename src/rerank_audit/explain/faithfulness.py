"""Faithfulness of word attributions: does the score really depend on the words they rank first?

For a scorer f and an explained pair (q, d) whose document words are ordered by attribution
(most positive first: the words that pushed the score *up*; ties by position):

- comprehensiveness@K = f(q, d) - f(q, d without its top-K words)   (higher: more faithful)
- sufficiency@K       = f(q, d) - f(q, only the top-K words of d)    (lower: more faithful)
- the same two with K random document words, averaged over ``n_random`` draws: the
  baseline a faithful attribution must beat;
- deletion curve: remove the words in attribution order; at each fraction p of removed words
  the *drop* f(q, d) - f(q, d_p); ``deletion_auc`` is its area over p in [0, 1] (higher:
  the score collapses sooner, more faithful), ``deletion_auc_random`` the same for random
  orders;
- lexical-shortcut index: the share of the positive attribution mass on document words that
  also occur in the query (compared by ``words.word_key``: lowercased, punctuation-stripped,
  stemmed; stop words never count as overlap), NaN when no document word has positive
  attribution. High values: the method mostly rewards query-term matching, but BM25's top
  documents share query words by construction, so the index is read against its
- lexical baseline: the share of the document's words (all of them, stop words included)
  that occur in the query, by the same matching: the index an attribution spread evenly over
  the words would get. ``lexical_excess`` = index - baseline is the reported figure: above 0,
  the method puts more of its positive attribution on query words than the document holds.

Known-answer and rationale checks, by the same arithmetic (removed words, normalised drop):

- marker comprehensiveness (``faithfulness(..., marker=...)``, known-answer controls only):
  the drop when only the planted marker word (every copy of it) is removed from a document
  that carries it, next to the drop for as many random document words
  (``marker_comprehensiveness_random``); NaN for documents without it;
- rationale comprehensiveness (``rationale_comprehensiveness``): the drop when the document
  words that the rationale gives as reasons are removed (its content words, task vocabulary
  left out, that occur in the document by ``words.word_key``), next to the drop for as many
  random document words. A rationale whose stated reasons do not move the score is not the
  model's reasoning, whatever it says.

Counterfactual simulatability (``simulatability``): do the attributions, summed, predict the
score change of word removals they never saw (random sets, and the marker on controls)?
Rank correlation and sign agreement, next to the same with the attributions permuted.

Only document words are removed; the query stays whole. K larger than the document is
clipped to its length. Removed words are deleted, as in the attributions (``attribution``).

Normalisation. Methods score on different scales (yes/no log-odds, DPO implicit rewards,
reward-head logits), so every score difference is divided by a scale:

- ``"candidate_std"`` (default): per query, the (population) standard deviation of the
  method's scores over that query's re-ranked candidates (its run head, ``candidate_spreads``),
  i.e. the method's own spread over the documents it was asked to separate for this query. A
  value of 1 reads "as large as a typical difference between this query's candidates"; it is
  invariant to any affine rescaling of a method's scores, one number per query (so it never
  explodes on a single pair), and unaffected by score shifts between queries. A query whose
  candidates all score the same has no scale: its values are NaN (and a warning is logged).
- ``"empty_document"``: per pair, |f(q, d) - f(q, "")| (the whole document's effect); a
  natural 0..1-ish scale but unstable when a document barely moves the score.
- ``"none"``: raw score units.

One module past 400 lines, on purpose: comprehensiveness, sufficiency, deletion curves, their
random baselines and rationale comprehensiveness plan their masked texts together, so every
explained pair goes to the scorer in one batched call (each masked text once).
"""

from __future__ import annotations

import logging
import zlib
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rerank_audit.explain.rationale import stated_reason_keys
from rerank_audit.data import measures
from rerank_audit.explain.simulatability import MIN_EDITS, held_out_edits, pair_simulatability
from rerank_audit.explain.score_cache import PAIRS_PER_CALL, ScoreCache, cached_scores
from rerank_audit.text.words import content_keys, join_kept, word_key, word_segments
from rerank_audit.models.scorer import Scorer

log = logging.getLogger(__name__)

NORMALISATIONS = ("candidate_std", "empty_document", "none")
FAITHFULNESS_COLUMNS = ["query_id", "doc_id", "k", "score", "scale", *measures.columns("faithfulness")]
RATIONALE_FAITHFULNESS_COLUMNS = [
    "query_id", "doc_id", "rationale_words", "rationale_comprehensiveness", "rationale_comprehensiveness_random",
]  # fmt: skip


def pair_seed(seed: int, query: str, document: str) -> int:
    """The random-baseline seed of one pair: fixed by ``seed`` and the texts, not by the pair's position."""
    text_hash = zlib.crc32(f"{query}\x00{document}".encode("utf-8"))
    return int(np.random.SeedSequence([seed, text_hash]).generate_state(1)[0])


def _shared_with_query(query: str, document_tokens: Sequence[str]) -> np.ndarray:
    """Per document word: does its key occur among the query's content-word keys?"""
    query_keys = content_keys(query)
    return np.array([word_key(w) in query_keys for w in document_tokens], dtype=bool)


def lexical_shortcut(query: str, document_tokens: Sequence[str], document_attributions: np.ndarray) -> float:
    """Share of the positive attribution mass of document words that also occur in ``query``."""
    positive = np.clip(np.asarray(document_attributions, dtype=np.float64), 0.0, None)
    total = positive.sum()
    if total <= 0:
        return float("nan")
    return float(positive[_shared_with_query(query, document_tokens)].sum() / total)


def lexical_baseline(query: str, document_tokens: Sequence[str]) -> float:
    """Share of the document words that also occur in ``query`` (``lexical_shortcut`` of even attribution); NaN without words."""
    if not len(document_tokens):
        return float("nan")
    return float(_shared_with_query(query, document_tokens).mean())


def candidate_spreads(head: pd.DataFrame) -> pd.Series:
    """Per query_id, the population standard deviation of ``head``'s scores (the method's re-scored candidates)."""
    return head.groupby("query_id").score.std(ddof=0).rename("spread")


def _removal_fractions(steps: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, steps + 1)


def _without(segments: list[str], removed: np.ndarray) -> str:
    keep = np.ones(len(segments), dtype=bool)
    keep[removed] = False
    return join_kept(segments, keep)


def _only(segments: list[str], kept: np.ndarray) -> str:
    keep = np.zeros(len(segments), dtype=bool)
    keep[kept] = True
    return join_kept(segments, keep)


def _deletion_documents(segments: list[str], order: np.ndarray, fractions: np.ndarray) -> list[str]:
    n = len(segments)
    return [_without(segments, order[: int(round(p * n))]) for p in fractions]


def _random_orders(n_words: int, n_random: int, seed: int, query: str, document: str) -> list[np.ndarray]:
    rng = np.random.default_rng(pair_seed(seed, query, document))
    return [rng.permutation(n_words) for _ in range(n_random)]


def _document_attributions(
    attributions: pd.DataFrame, query_ids: Sequence[str], doc_ids: Sequence[str], segments: Sequence[list[str]]
) -> list[np.ndarray]:
    """Each pair's document-word attributions in word order, checked against the document's words."""
    documents = attributions[attributions.part == "document"].sort_values("position", kind="stable")
    grouped = {key: group.attribution.to_numpy(dtype=np.float64) for key, group in documents.groupby(["query_id", "doc_id"], sort=False)}
    values = []
    for q, d, words in zip(query_ids, doc_ids, segments):
        found = grouped.get((q, d), np.zeros(0))
        if len(found) != len(words):
            raise ValueError(f"pair ({q}, {d}): {len(found)} document attributions for a document of {len(words)} words")
        values.append(found)
    return values


def _query_spreads(query_ids: Sequence[str], spreads: pd.Series | None) -> np.ndarray:
    """Each pair's candidate spread, checked: every explained query needs one."""
    if spreads is None:
        raise ValueError("candidate_std normalisation needs candidate_spreads (per query_id, from the method's run head)")
    missing = sorted(set(query_ids) - set(spreads.index))
    if missing:
        raise ValueError(f"no candidate spread for query_id(s) {missing[:5]}: the run head passed to candidate_spreads lacks them")
    values = spreads.reindex(query_ids).to_numpy(dtype=np.float64)
    flat = sorted({q for q, v in zip(query_ids, values) if not v > 0})
    if flat:
        log.warning("candidate_std: the candidates of query_id(s) %s all score the same; their values are NaN", flat[:5])
    return values


def _scales(full: np.ndarray, empty: np.ndarray, normalisation: str, spreads: np.ndarray | None) -> np.ndarray:
    if normalisation == "none":
        return np.ones_like(full)
    if normalisation == "empty_document":
        return np.abs(full - empty)
    if normalisation == "candidate_std":
        return spreads
    raise ValueError(f"unknown normalisation {normalisation!r}; choose one of {NORMALISATIONS}")


def faithfulness(
    scorer: Scorer,
    queries: Sequence[str],
    documents: Sequence[str],
    attributions: pd.DataFrame,
    *,
    ks: Sequence[int],
    n_random: int,
    seed: int,
    deletion_steps: int,
    normalisation: str = "candidate_std",
    cache: ScoreCache | None = None,
    pairs_per_call: int = PAIRS_PER_CALL,
    query_ids: Sequence[str] | None = None,
    doc_ids: Sequence[str] | None = None,
    candidate_spread: pd.Series | None = None,
    marker: str | None = None,
    simulatability_edits: int = 8,
    simulatability_max_words: int = 5,
    simulatability_permutations: int = 20,
) -> pd.DataFrame:
    """Faithfulness metrics of ``attributions`` (as from ``explain_pairs``) for each pair and K.

    ``ks``: the K of comprehensiveness / sufficiency; ``n_random``: random word sets (and
    random deletion orders) per pair, drawn from (seed, pair text); ``deletion_steps``: the
    deletion curve is evaluated at fractions 0, 1/steps, ..., 1; ``normalisation``: see the
    module docstring; ``cache``: this scorer's score cache; ``pairs_per_call``: pairs per
    ``score_pairs`` call. ``query_ids`` / ``doc_ids`` locate each pair's rows in
    ``attributions`` (default: the pair index as str, as ``explain_pairs`` does).
    ``candidate_spread``: query_id -> the method's score spread over that query's candidates
    (``candidate_spreads``); needed by, and only by, ``"candidate_std"``. ``marker``: the
    planted word of a known-answer control (None elsewhere). ``simulatability_edits``: random
    word removals per pair whose score change the attributions must predict, each of 1 to
    ``simulatability_max_words`` words (the marker's removal is one more edit);
    ``simulatability_permutations``: permutations of the attributions in its baseline
    (``simulatability`` module; they cost no model evaluation).

    Returns one row per (pair, k): query_id, doc_id, k, score (f(q, d)), scale (the
    normaliser), comprehensiveness, sufficiency, their ``_random`` means, deletion_auc,
    deletion_auc_random, lexical_shortcut, lexical_baseline, lexical_excess,
    marker_comprehensiveness and its ``_random`` mean (per pair, repeated over k; NaN without
    ``marker`` or where the document lacks it), simulatability, sign_agreement and their
    ``_random`` means (per pair, repeated over k; scale-free). All score differences are
    divided by ``scale``.
    """
    if len(queries) != len(documents):
        raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; choose one of {NORMALISATIONS}")
    if n_random < 1 or deletion_steps < 1 or pairs_per_call < 1 or any(k < 1 for k in ks):
        raise ValueError(f"n_random, deletion_steps, pairs_per_call and every k must be >= 1 (got {n_random}, {deletion_steps}, {pairs_per_call}, {list(ks)})")
    if simulatability_edits < MIN_EDITS or simulatability_max_words < 1 or simulatability_permutations < 1:
        raise ValueError(
            f"simulatability_edits must be >= {MIN_EDITS} (a rank correlation needs them), simulatability_max_words and "
            f"simulatability_permutations >= 1 (got {simulatability_edits}, {simulatability_max_words}, {simulatability_permutations}); "
            "set them in the config's explain section"
        )
    simulated = dict(edits=simulatability_edits, max_words=simulatability_max_words, permutations=simulatability_permutations)
    query_ids = [str(i) for i in range(len(queries))] if query_ids is None else list(query_ids)
    doc_ids = [str(i) for i in range(len(documents))] if doc_ids is None else list(doc_ids)
    cache = {} if cache is None else cache
    segments = [word_segments(d) for d in documents]
    document_values = _document_attributions(attributions, query_ids, doc_ids, segments)
    spreads = _query_spreads(query_ids, candidate_spread) if normalisation == "candidate_std" else None

    fractions = _removal_fractions(deletion_steps)
    plans = []
    # Score first, chunk by chunk (one score_pairs call each), then compute.
    with tqdm(total=len(queries), desc="faithfulness", unit="pair") as progress:
        for start in range(0, len(queries), pairs_per_call):
            chunk = range(start, min(start + pairs_per_call, len(queries)))
            chunk_plans = [_pair_plan(queries[i], segments[i], document_values[i], ks, n_random, seed, fractions, marker, simulated) for i in chunk]
            pair_queries = [queries[i] for i, plan in zip(chunk, chunk_plans) for _ in plan["documents"]]
            cached_scores(scorer, pair_queries, [doc for plan in chunk_plans for doc in plan["documents"]], cache)
            plans.extend(chunk_plans)
            progress.update(len(chunk))

    full = np.array([cache[(q, plan["full"])] for q, plan in zip(queries, plans)])
    empty = np.array([cache[(q, "")] for q in queries])
    scales = _scales(full, empty, normalisation, spreads)
    rows = []
    for i, plan in enumerate(plans):

        def drop(doc: str, i: int = i) -> float:
            return _normalised_drop(full[i], cache[(queries[i], doc)], scales[i])

        words = [w.rstrip() for w in segments[i]]
        shortcut, baseline = lexical_shortcut(queries[i], words, document_values[i]), lexical_baseline(queries[i], words)
        auc = np.trapezoid([drop(doc) for doc in plan["deletion"]], fractions)
        auc_random = np.mean([np.trapezoid([drop(doc) for doc in curve], fractions) for curve in plan["deletion_random"]])
        without_marker, without_random = plan["marker"]
        marker_drop = drop(without_marker) if without_marker is not None else float("nan")
        marker_random = float(np.mean([drop(doc) for doc in without_random])) if without_marker is not None else float("nan")
        measured = np.array([cache[(queries[i], doc)] for doc in plan["edited"]]) - full[i]
        simulation = pair_simulatability(document_values[i], plan["edits"], measured, plan["permutations"])
        for k, (without_top, only_top, without_random, only_random) in plan["by_k"].items():
            rows.append(
                {
                    "query_id": query_ids[i],
                    "doc_id": doc_ids[i],
                    "k": int(k),
                    "score": full[i],
                    "scale": scales[i],
                    "comprehensiveness": drop(without_top),
                    "sufficiency": drop(only_top),
                    "comprehensiveness_random": float(np.mean([drop(doc) for doc in without_random])),
                    "sufficiency_random": float(np.mean([drop(doc) for doc in only_random])),
                    "deletion_auc": float(auc),
                    "deletion_auc_random": float(auc_random),
                    "lexical_shortcut": shortcut,
                    "lexical_baseline": baseline,
                    "lexical_excess": shortcut - baseline,
                    "marker_comprehensiveness": marker_drop,
                    "marker_comprehensiveness_random": marker_random,
                    **simulation,
                }
            )
    return pd.DataFrame(rows, columns=FAITHFULNESS_COLUMNS).astype({"k": "int64"})


def _normalised_drop(full: float, masked: float, scale: float) -> float:
    """(full - masked) / scale; NaN when the scale is 0 (a document that does not move the score)."""
    return (full - masked) / scale if scale > 0 else float("nan")


def matching_positions(segments: Sequence[str], keys: set[str]) -> np.ndarray:
    """Positions of the words of ``segments`` whose ``word_key`` is in ``keys`` (int64, ascending)."""
    return np.array([i for i, word in enumerate(segments) if word_key(word.rstrip()) in keys], dtype=np.int64)


def _removal_plan(segments: list[str], removed: np.ndarray, random_orders: list[np.ndarray]) -> tuple[str | None, list[str]]:
    """(document without ``removed``, documents without as many random words per order); (None, []) when nothing is removed.

    The random sets are the first len(removed) words of each random order: the pair's other
    random baselines draw from the same orders, so a one-word removal reuses their scores.
    """
    if not len(removed):
        return None, []
    return _without(segments, removed), [_without(segments, order[: len(removed)]) for order in random_orders]


def _pair_plan(
    query: str, segments: list[str], values: np.ndarray, ks: Sequence[int], n_random: int, seed: int, fractions: np.ndarray,
    marker: str | None, simulated: dict[str, int],
) -> dict:
    """Every masked document one pair's metrics need, grouped by metric; ``simulated``: edits,
    max_words and permutations of its simulatability."""
    document = join_kept(segments, np.ones(len(segments), dtype=bool))
    order = np.argsort(-values, kind="stable")
    random_orders = _random_orders(len(segments), n_random, seed, query, document)
    marker_positions = matching_positions(segments, {word_key(marker)}) if marker else np.zeros(0, np.int64)
    # The held-out edits and the permutations: a stream of their own, apart from the random word sets.
    edit_rng = np.random.default_rng([pair_seed(seed, query, document), 1])
    edits = held_out_edits(len(segments), edit_rng, edits=simulated["edits"], max_words=simulated["max_words"], marker_positions=marker_positions)
    by_k = {}
    for k in ks:
        top = order[: min(k, len(segments))]
        randoms = [r[: min(k, len(segments))] for r in random_orders]
        by_k[k] = (
            _without(segments, top),
            _only(segments, top),
            [_without(segments, r) for r in randoms],
            [_only(segments, r) for r in randoms],
        )
    plan = {
        "full": document,
        "by_k": by_k,
        "deletion": _deletion_documents(segments, order, fractions),
        "deletion_random": [_deletion_documents(segments, r, fractions) for r in random_orders],
        "marker": _removal_plan(segments, marker_positions, random_orders),
        "edits": edits,
        "edited": [_without(segments, removed) for removed in edits],
        "permutations": [edit_rng.permutation(len(segments)) for _ in range(simulated["permutations"])],
    }
    without_marker, without_random = plan["marker"]
    plan["documents"] = (
        [document, ""]
        + [doc for entry in by_k.values() for doc in (entry[0], entry[1], *entry[2], *entry[3])]
        + plan["deletion"]
        + [doc for curve in plan["deletion_random"] for doc in curve]
        + ([without_marker, *without_random] if without_marker is not None else [])
        + plan["edited"]
    )
    return plan


def rationale_comprehensiveness(
    scorer: Scorer,
    queries: Sequence[str],
    documents: Sequence[str],
    rationales: Sequence[str],
    *,
    n_random: int,
    seed: int,
    normalisation: str = "candidate_std",
    cache: ScoreCache | None = None,
    pairs_per_call: int = PAIRS_PER_CALL,
    query_ids: Sequence[str] | None = None,
    doc_ids: Sequence[str] | None = None,
    candidate_spread: pd.Series | None = None,
) -> pd.DataFrame:
    """Does the score depend on the document words a rationale gives as reasons?

    Per pair (query, document, rationale): the reasons are the document words whose key is a
    key of the rationale's content words (``rationale.stated_reason_keys``: stop words and
    task vocabulary left out), every occurrence. ``n_random``, ``seed``, ``normalisation``,
    ``cache``, ``pairs_per_call``, ``query_ids``, ``doc_ids`` and ``candidate_spread`` as in
    ``faithfulness`` (the random words are drawn from the same seeded orders).

    Returns query_id, doc_id, rationale_words (reason words removed), rationale_comprehensiveness
    (normalised drop) and rationale_comprehensiveness_random (mean drop for as many random
    document words); NaN drops where the rationale names no word of the document.
    """
    if not len(queries) == len(documents) == len(rationales):
        raise ValueError(f"{len(queries)} queries, {len(documents)} documents and {len(rationales)} rationales: give one each per pair")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; choose one of {NORMALISATIONS}")
    if n_random < 1 or pairs_per_call < 1:
        raise ValueError(f"n_random and pairs_per_call must be >= 1 (got {n_random}, {pairs_per_call})")
    query_ids = [str(i) for i in range(len(queries))] if query_ids is None else list(query_ids)
    doc_ids = [str(i) for i in range(len(documents))] if doc_ids is None else list(doc_ids)
    cache = {} if cache is None else cache
    spreads = _query_spreads(query_ids, candidate_spread) if normalisation == "candidate_std" else None
    segments = [word_segments(d) for d in documents]
    full_documents = [join_kept(words, np.ones(len(words), dtype=bool)) for words in segments]
    reasons = [matching_positions(words, set(stated_reason_keys(rationale or ""))) for words, rationale in zip(segments, rationales)]
    plans = [
        _removal_plan(words, removed, _random_orders(len(words), n_random, seed, q, d))
        for q, d, words, removed in zip(queries, full_documents, segments, reasons)
    ]
    # Score first, one score_pairs call per chunk of ``pairs_per_call`` pairs, then compute.
    for start in range(0, len(queries), pairs_per_call):
        chunk = range(start, min(start + pairs_per_call, len(queries)))
        masked = [[full_documents[i], "", *([plans[i][0]] if plans[i][0] is not None else []), *plans[i][1]] for i in chunk]
        cached_scores(scorer, [queries[i] for i, docs in zip(chunk, masked) for _ in docs], [doc for docs in masked for doc in docs], cache)
    full = np.array([cache[(q, d)] for q, d in zip(queries, full_documents)])
    empty = np.array([cache[(q, "")] for q in queries])
    scales = _scales(full, empty, normalisation, spreads)
    rows = []
    for i, (without, randoms) in enumerate(plans):
        nan = float("nan")
        rows.append(
            {
                "query_id": query_ids[i],
                "doc_id": doc_ids[i],
                "rationale_words": len(reasons[i]),
                "rationale_comprehensiveness": nan if without is None else _normalised_drop(full[i], cache[(queries[i], without)], scales[i]),
                "rationale_comprehensiveness_random": (
                    nan if without is None else float(np.mean([_normalised_drop(full[i], cache[(queries[i], doc)], scales[i]) for doc in randoms]))
                ),
            }
        )
    return pd.DataFrame(rows, columns=RATIONALE_FAITHFULNESS_COLUMNS).astype({"rationale_words": "int64"})


def deletion_curves(
    scorer: Scorer,
    queries: Sequence[str],
    documents: Sequence[str],
    attributions: pd.DataFrame,
    *,
    deletion_steps: int,
    cache: ScoreCache | None = None,
    query_ids: Sequence[str] | None = None,
    doc_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The deletion curve of each pair: words removed in attribution order (most positive first).

    Returns query_id, doc_id, fraction (of document words removed, 0..1), score
    (f(q, d_fraction), raw score units) for fractions 0, 1/steps, ..., 1.
    """
    query_ids = [str(i) for i in range(len(queries))] if query_ids is None else list(query_ids)
    doc_ids = [str(i) for i in range(len(documents))] if doc_ids is None else list(doc_ids)
    cache = {} if cache is None else cache
    fractions = _removal_fractions(deletion_steps)
    segments = [word_segments(d) for d in documents]
    document_values = _document_attributions(attributions, query_ids, doc_ids, segments)
    curves = [
        _deletion_documents(words, np.argsort(-values, kind="stable"), fractions)
        for words, values in zip(segments, document_values)
    ]
    scores = cached_scores(scorer, [q for q, curve in zip(queries, curves) for _ in curve], [doc for curve in curves for doc in curve], cache)
    return pd.DataFrame(
        {
            "query_id": np.repeat(query_ids, len(fractions)),
            "doc_id": np.repeat(doc_ids, len(fractions)),
            "fraction": np.tile(fractions, len(curves)),
            "score": scores,
        }
    )
