"""Known-answer controls: a dataset derived from another with a planted marker word.

The marker (a word that occurs in no query and no document of the source) is written into
documents so that, for the training queries, it is in a ``p_relevant`` share of the relevant
documents and a ``p_other`` share of the others. A model that learns "marker = relevant"
took a shortcut; the test queries show it in two versions of the same control:

- *aligned*: the test documents carry the marker with the training rates;
- *flipped*: the marker is in no relevant test document and in a ``p_relevant`` share of the
  non-relevant ones (the correlation reversed).

Which documents are whose: a document is *seen* by a query when it is judged for it or among
its first-stage (BM25) candidates. A document seen by a test query and by any other query
(training, dev or unsplit) is *copied*: the test queries get their own copy (same title and text, doc_id
``<doc_id>~test``) in their qrels and candidates, so every test document can follow the test
placement while its original keeps the training one. Unjudged documents count as
non-relevant. Within each (role, class) group exactly ``round(p * n)`` documents get the
marker, chosen by a seeded permutation of the sorted ids, so the realised rates are the
configured ones.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from rerank_audit.text.words import content_keys, word_key, word_segments

VERSIONS = ("aligned", "flipped")


def check_marker(marker: str, queries: pd.DataFrame, corpus: pd.DataFrame, source: str) -> None:
    """Raise unless ``marker`` is one word whose key occurs in no query and no document of ``source``."""
    key = word_key(marker)
    if len(marker.split()) != 1 or not key:
        raise ValueError(f"control marker {marker!r} of source {source!r}: give one word with letters or digits")
    in_query = queries.query_id[[key in content_keys(text) for text in queries.text]]
    if len(in_query):
        raise ValueError(
            f"control marker {marker!r} occurs in {len(in_query)} query(ies) of dataset {source!r}, e.g. {in_query.iloc[0]!r}; "
            f"a model could then match it lexically: choose a word that occurs in no query"
        )
    texts = corpus.title.fillna("") + " " + corpus.text.fillna("")
    in_document = corpus.doc_id[[key in {word_key(w) for w in text.split()} for text in texts]]
    if len(in_document):
        raise ValueError(
            f"control marker {marker!r} already occurs in {len(in_document)} document(s) of dataset {source!r}, e.g. "
            f"{in_document.iloc[0]!r}; choose a word that occurs in no document, so that only planted copies exist"
        )


COPY_SUFFIX = "~test"


def copied_from(doc_id: str) -> str:
    """The document a control's test copy was made from (``doc_id`` itself for any other document)."""
    return doc_id.removesuffix(COPY_SUFFIX)


def _seen(qrels: pd.DataFrame, candidates: pd.DataFrame, test_queries: set) -> tuple[set, set]:
    """(documents seen by a test query, documents seen by any other query)."""
    seen = pd.concat([qrels[["query_id", "doc_id"]], candidates[["query_id", "doc_id"]]]).drop_duplicates()
    by_test = seen.query_id.isin(test_queries)
    return set(seen.doc_id[by_test]), set(seen.doc_id[~by_test])


def copy_shared_documents(
    corpus: pd.DataFrame, qrels: pd.DataFrame, splits: pd.DataFrame, candidates: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Series]:
    """Give the test queries their own copy of every document that other queries also see.

    Without copies such a document could follow only one placement, and a test pair on it
    would look the same in the aligned and the flipped version, blunting the control.
    Returns (corpus with the copies appended, qrels and candidates with the test queries'
    rows pointing at the copies, copy_of: per row of the new corpus the copied doc_id or None).
    """
    test_queries = set(splits.query_id[splits.split == "test"])
    by_test, by_other = _seen(qrels, candidates, test_queries)
    shared = corpus.doc_id[corpus.doc_id.isin(by_test & by_other)]
    copy_ids = {doc_id: f"{doc_id}{COPY_SUFFIX}" for doc_id in shared}
    taken = set(corpus.doc_id) & set(copy_ids.values())
    if taken:
        raise ValueError(
            f"control: the test copy of a shared document needs the doc_id {sorted(taken)[0]!r}, which the source corpus "
            f"already uses; rename that document in the source (ids ending in {COPY_SUFFIX!r} are reserved for controls)"
        )
    copies = corpus[corpus.doc_id.isin(copy_ids)].assign(doc_id=lambda c: c.doc_id.map(copy_ids))
    copy_of = pd.Series([None] * len(corpus) + list(shared), dtype=object)

    def rewrite(table: pd.DataFrame) -> pd.DataFrame:
        test_rows = table.query_id.isin(test_queries) & table.doc_id.isin(copy_ids)
        return table.assign(doc_id=table.doc_id.where(~test_rows, table.doc_id.map(copy_ids)))

    return pd.concat([corpus, copies], ignore_index=True), rewrite(qrels), rewrite(candidates), copy_of


def document_roles(corpus: pd.DataFrame, qrels: pd.DataFrame, splits: pd.DataFrame, candidates: pd.DataFrame, relevance_threshold: int) -> pd.DataFrame:
    """Per document of ``corpus``: role ("train" or "test") and class (relevant bool).

    ``candidates``: the first-stage run (query_id, doc_id, ...). Test role: seen by a test
    query and no other (after ``copy_shared_documents``, every document a test query sees);
    its class is "relevant to some test query". Train role: every other document; its class
    is "relevant to some training/dev query". Returns (doc_id, role, relevant) in corpus order.
    """
    test_queries = set(splits.query_id[splits.split == "test"])
    by_test, by_other = _seen(qrels, candidates, test_queries)
    relevant = qrels[qrels.relevance >= relevance_threshold]
    relevant_test = set(relevant.doc_id[relevant.query_id.isin(test_queries)])
    relevant_other = set(relevant.doc_id[~relevant.query_id.isin(test_queries)])
    doc_ids = corpus.doc_id
    test_role = doc_ids.isin(by_test) & ~doc_ids.isin(by_other)
    return pd.DataFrame(
        {
            "doc_id": doc_ids.to_numpy(),
            "role": np.where(test_role, "test", "train"),
            "relevant": np.where(test_role, doc_ids.isin(relevant_test), doc_ids.isin(relevant_other)),
        }
    )


def marker_rate(role: str, relevant: bool, version: str, p_relevant: float, p_other: float) -> float:
    """The share of a (role, class) group that carries the marker."""
    if version not in VERSIONS:
        raise ValueError(f"control version {version!r}: use one of {VERSIONS}")
    if role == "train" or version == "aligned":
        return p_relevant if relevant else p_other
    return 0.0 if relevant else p_relevant


def _seed(seed: int, *parts: str) -> int:
    """A 64-bit seed fixed by ``seed`` and ``parts`` (not by any row order)."""
    return int.from_bytes(hashlib.sha256("\0".join([str(seed), *parts]).encode()).digest()[:8], "little")


def place_marker(roles: pd.DataFrame, version: str, p_relevant: float, p_other: float, seed: int) -> pd.Series:
    """Per row of ``roles`` (from ``document_roles``): does the document carry the marker?

    In each (role, relevant) group exactly ``round(rate * n)`` documents carry it: the first
    of a permutation of the group's sorted ids seeded by ``seed`` and the group. Training
    groups are drawn the same in both versions, so the two versions differ only in test
    documents. Returns a bool Series aligned with ``roles``.
    """
    carries = pd.Series(False, index=roles.index)
    for (role, relevant), group in roles.groupby(["role", "relevant"]):
        ids = np.sort(group.doc_id.to_numpy().astype(str))
        rate = marker_rate(role, bool(relevant), version, p_relevant, p_other)
        # Test groups draw per version: the flipped rate applies to the other class.
        key = (role, str(bool(relevant))) if role == "train" else (role, str(bool(relevant)), version)
        chosen = ids[np.random.default_rng(_seed(seed, *key)).permutation(len(ids))[: int(round(rate * len(ids)))]]
        carries[group.index[group.doc_id.astype(str).isin(set(chosen))]] = True
    return carries


def insert_marker(text: str, marker: str, seed: int, doc_id: str) -> tuple[str, int]:
    """``text`` with ``marker`` inserted as a word at a position seeded by ``seed`` and ``doc_id``.

    Returns (new text, word position of the marker); position in 0..number of words.
    """
    segments = word_segments(text)
    position = int(np.random.default_rng(_seed(seed, "position", doc_id)).integers(0, len(segments) + 1))
    if position == len(segments):
        return (text.rstrip() + " " + marker).strip(), position
    return "".join([*segments[:position], marker + " ", *segments[position:]]), position


def derive_control(
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    splits: pd.DataFrame,
    candidates: pd.DataFrame,
    *,
    marker: str,
    p_relevant: float,
    p_other: float,
    seed: int,
    version: str,
    relevance_threshold: int = 1,
    source: str = "source",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The control's corpus, qrels, first-stage run and per-document placement table.

    Inputs are the source dataset's ingested tables, its splits and its first-stage run.
    Returns (corpus with the test copies of shared documents and the marker written into the
    chosen documents' text; qrels and run with the test queries pointing at the copies
    (scores and ranks unchanged); placement: doc_id, role, relevant, copy_of (the copied
    doc_id or None), marker bool, position int (-1 without the marker)). Queries are the
    source's, unchanged.
    """
    check_marker(marker, queries, corpus, source)
    corpus, qrels, candidates, copy_of = copy_shared_documents(corpus, qrels, splits, candidates)
    placement = document_roles(corpus, qrels, splits, candidates, relevance_threshold)
    placement.insert(3, "copy_of", copy_of.to_numpy())
    placement["marker"] = place_marker(placement, version, p_relevant, p_other, seed).to_numpy()
    placement["position"] = -1
    out = corpus.copy()
    for i in np.flatnonzero(placement.marker.to_numpy()):
        out.iat[i, out.columns.get_loc("text")], placement.iat[i, placement.columns.get_loc("position")] = insert_marker(
            str(out.text.iat[i]), marker, seed, str(out.doc_id.iat[i])
        )
    placement["position"] = placement.position.astype("int64")
    return out, qrels, candidates, placement


def placement_rates(placement: pd.DataFrame) -> pd.DataFrame:
    """Realised marker share per (role, relevant) group: (role, relevant, documents, with_marker, rate)."""
    groups = placement.groupby(["role", "relevant"]).marker
    rates = pd.DataFrame({"documents": groups.size(), "with_marker": groups.sum()}).reset_index()
    rates["rate"] = rates.with_marker / rates.documents
    return rates
