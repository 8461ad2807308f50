"""The probed pairs of each edit probe: which head documents it edits, and their edited copies.

Each function takes the pool (a method's re-ranked head, one row per document: query_id,
doc_id, score, rank, relevance, judged, relevant, document, query_text; ordered by query and
first-stage rank) and the context as keywords (``seed``, ``marker``, ``corpus``, ``qrels``,
``threshold``; each takes what it needs), and returns the pool rows it edits with an
``edited`` column (the document's edited text). Edits are seeded per pair (``pair_seed`` of
the seed and the pair's texts), so results do not depend on the order of queries or
documents. The registry (``probe.registry``) names one of these per probe.

Imports neither bm25s nor scipy at module level: the config check reads the registry (and so
this module) at every Snakefile parse.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Callable

import numpy as np
import pandas as pd

from rerank_audit.probe.edits import (
    RELEVANCE_CLAIMS,
    append_distractor,
    append_text,
    insert_marker_word,
    moved_to_start,
    negate,
    pad_with_filler,
    repeat_document,
    sentences,
    shuffle_words,
    stuff_query_words,
)
from rerank_audit.text.words import STOP_WORDS, bare_word, split_words, word_key

log = logging.getLogger(__name__)
_NON_WORD = re.compile(r"[\W_]+")

ProbedPairs = Callable[..., pd.DataFrame]


def _pair_seed(seed: int, query: str, document: str) -> int:
    from rerank_audit.explain.faithfulness import pair_seed  # scipy: imported when a probe runs, not at parse

    return pair_seed(seed, query, document)


@functools.cache
def _shared_stop_words() -> frozenset[str]:
    """Function words for the explanations' list and for BM25's English stop words alike: words
    an added text may share with the query, as they add no term that BM25 (the reference) indexes."""
    from bm25s.stopwords import STOPWORDS_EN  # bm25s: imported when a probe runs, not at parse

    return STOP_WORDS & frozenset(STOPWORDS_EN)


def topic_keys(text: str) -> set[str]:
    """Keys of the words of ``text`` but the shared stop words, also of the parts of words joined by punctuation ("sea-level": sea, level)."""
    stop = _shared_stop_words()
    words = [w for w in split_words(text) + split_words(_NON_WORD.sub(" ", text)) if bare_word(w) not in stop]
    return {key for key in map(word_key, words) if key}


def _non_relevant(pool: pd.DataFrame) -> pd.DataFrame:
    """Each query's judged non-relevant documents; without one, its lowest-ranked document not judged relevant."""
    non_relevant = pool[pool.judged & ~pool.relevant]
    fallback = pool[~pool.relevant & ~pool.query_id.isin(non_relevant.query_id)].groupby("query_id", sort=False).tail(1)
    return pd.concat([non_relevant, fallback]).sort_values(["query_id", "rank"], kind="stable")


def stuffing_pairs(pool: pd.DataFrame, **_) -> pd.DataFrame:
    chosen = _non_relevant(pool)
    return chosen.assign(edited=[stuff_query_words(d, q) for d, q in zip(chosen.document, chosen.query_text)])


def shuffle_pairs(pool: pd.DataFrame, seed: int, **_) -> pd.DataFrame:
    return pool.assign(edited=[shuffle_words(d, _pair_seed(seed, q, d)) for d, q in zip(pool.document, pool.query_text)])


def repetition_pairs(pool: pd.DataFrame, **_) -> pd.DataFrame:
    return pool.assign(edited=[repeat_document(d) for d in pool.document])


def marker_pairs(pool: pd.DataFrame, seed: int, marker: str, **_) -> pd.DataFrame:
    key = word_key(marker)
    # A document that already carries the marker (a control's planted copy) cannot gain it.
    carries = np.array([key in {word_key(w) for w in d.split()} for d in pool.document], dtype=bool)
    without = pool[~pool.relevant.to_numpy() & ~carries]
    return without.assign(edited=[insert_marker_word(d, marker, seed, i) for d, i in zip(without.document, without.doc_id)])


def distractor_pairs(pool: pd.DataFrame, seed: int, corpus: pd.DataFrame, qrels: pd.DataFrame, threshold: int, **_) -> pd.DataFrame:
    """Every head document with a sentence (seeded choice) from a document judged relevant to another
    of the pool's queries, neither judged for nor in the head of this one, that shares no topic key
    with this query; documents of a query without such a sentence are left out."""
    query_ids = set(pool.query_id)
    relevant = qrels[(qrels.relevance >= threshold) & qrels.query_id.isin(query_ids)][["query_id", "doc_id"]]
    body = corpus.set_index("doc_id").text
    # Every sentence of a source document once, with its topic keys.
    source = [
        (doc_id, sentence, topic_keys(sentence))
        for doc_id in dict.fromkeys(relevant.doc_id)
        for sentence in sentences(str(body.get(doc_id, "") or ""))
    ]
    relevant_to = relevant.groupby("doc_id").query_id.agg(set).to_dict()
    seen = pd.concat([qrels[["query_id", "doc_id"]], pool[["query_id", "doc_id"]]]).groupby("query_id").doc_id.agg(set).to_dict()
    edited = []
    for query_id, group in pool.groupby("query_id", sort=False):
        query = group.query_text.iloc[0]
        query_keys = topic_keys(query)
        candidates = [
            sentence
            for doc_id, sentence, keys in source
            if relevant_to[doc_id] - {query_id} and doc_id not in seen.get(query_id, ()) and not keys & query_keys
        ]
        edited += [append_distractor(d, candidates, _pair_seed(seed, query, d)) for d in group.document]
    return pool.assign(edited=edited).dropna(subset=["edited"])


def instruction_pairs(pool: pd.DataFrame, **_) -> pd.DataFrame:
    """The documents stuffing edits (non-relevant ones), each with the first of ``RELEVANCE_CLAIMS``
    that shares no topic key with the query appended; a query that shares a word with every claim: left out."""
    chosen = _non_relevant(pool)
    claims = {query: _relevance_claim(query) for query in set(chosen.query_text)}
    edited = [None if claims[q] is None else append_text(d, claims[q]) for d, q in zip(chosen.document, chosen.query_text)]
    return chosen.assign(edited=edited).dropna(subset=["edited"])


def _relevance_claim(query: str) -> str | None:
    """The first of ``RELEVANCE_CLAIMS`` that shares no topic key with ``query``; None if each shares one."""
    keys = topic_keys(query)
    return next((claim for claim in RELEVANCE_CLAIMS if not topic_keys(claim) & keys), None)


def negation_pairs(pool: pd.DataFrame, **_) -> pd.DataFrame:
    """The relevant head documents, each with its first auxiliary's clause negated (``edits.negate``);
    those without an auxiliary are left out, and counted in the log."""
    relevant = pool[pool.relevant]
    negated = relevant.assign(edited=[negate(d) for d in relevant.document]).dropna(subset=["edited"])
    if len(negated) < len(relevant):
        log.info("probe negation: %d of %d relevant head documents have no auxiliary verb; not probed", len(relevant) - len(negated), len(relevant))
    return negated


def padding_pairs(pool: pd.DataFrame, seed: int, **_) -> pd.DataFrame:
    """Every head document, its length in words doubled with filler words that share no topic key with the query or the document."""
    edited = [pad_with_filler(d, topic_keys(q) | topic_keys(d), _pair_seed(seed, q, d)) for d, q in zip(pool.document, pool.query_text)]
    return pool.assign(edited=edited).dropna(subset=["edited"])


def at_start(pairs: ProbedPairs) -> ProbedPairs:
    """The probed pairs of ``pairs`` (an appending edit) with the appended text placed before the document instead."""

    @functools.wraps(pairs)
    def prepended(pool: pd.DataFrame, **context) -> pd.DataFrame:
        edits = pairs(pool, **context)
        return edits.assign(edited=[moved_to_start(d, e) for d, e in zip(edits.document, edits.edited)])

    return prepended
