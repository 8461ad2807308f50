"""BM25 first stage with bm25s (sparse, numpy, batched) over title + text.

Two candidate pools: ``bm25_candidates`` (the top k of the whole corpus, the realistic
setting) and ``judged_candidates`` (each query's judged documents, ordered by BM25: the
protocol of a fully judged, rated pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import bm25s
import numpy as np
import pandas as pd
import Stemmer

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.text.prompts import document_text


@dataclass
class BM25Index:
    retriever: bm25s.BM25
    doc_ids: np.ndarray
    stemmer: Stemmer.Stemmer | None
    stopwords: str | list[str] | None

    def tokenize(self, texts: list[str]) -> list[list[str]]:
        return bm25s.tokenize(texts, stopwords=self.stopwords or [], stemmer=self.stemmer, return_ids=False, show_progress=False)


def bm25_index(corpus: pd.DataFrame, k1: float = 1.2, b: float = 0.75, stemmer: str | None = "english", stopwords: str | None = "en") -> BM25Index:
    """Index ``corpus`` (doc_id, title, text); ``stemmer`` is a Snowball language or None."""
    stem = Stemmer.Stemmer(stemmer) if stemmer else None
    index = BM25Index(bm25s.BM25(k1=k1, b=b), corpus.doc_id.to_numpy(dtype=object), stem, stopwords)
    texts = [document_text(t, x) for t, x in zip(corpus.title, corpus.text)]
    index.retriever.index(index.tokenize(texts), show_progress=False)
    return index


def bm25_candidates(index: BM25Index, queries: pd.DataFrame, k: int) -> pd.DataFrame:
    """Top-``k`` documents per query as a run (query_id, doc_id, score, rank, method, budget).

    Documents with score 0 share no term with the query: bm25s pads short result lists with
    them, and they are dropped, so a query may have fewer than k candidates (or none).
    Ties are ordered by doc_id so runs are reproducible.
    """
    k = min(k, len(index.doc_ids))
    positions, scores = index.retriever.retrieve(index.tokenize(queries.text.tolist()), k=k, show_progress=False, n_threads=1)
    run = pd.DataFrame(
        {
            "query_id": np.repeat(queries.query_id.to_numpy(dtype=object), k),
            "doc_id": index.doc_ids[positions.ravel()],
            "score": scores.ravel().astype("float64"),
        }
    )
    return _ranked(run[run.score > 0])


def judged_candidates(index: BM25Index, queries: pd.DataFrame, qrels: pd.DataFrame) -> pd.DataFrame:
    """Every judged document (any grade) of each query, ordered by its BM25 score, as a run.

    ``qrels`` (query_id, doc_id, relevance) rows of queries not in ``queries`` are ignored;
    a judged document unknown to the index is an error. Unlike ``bm25_candidates``,
    documents that share no term with the query stay in the pool (score 0, after the
    others). Ties are ordered by doc_id. Queries without judgements get no rows.
    """
    judged = qrels[qrels.query_id.isin(queries.query_id)][["query_id", "doc_id"]].drop_duplicates()
    position = pd.Series(np.arange(len(index.doc_ids)), index=index.doc_ids)
    unknown = judged.doc_id[~judged.doc_id.isin(position.index)]
    if len(unknown):
        raise ValueError(f"qrels name {unknown.nunique()} document(s) not in the corpus, e.g. {unknown.iloc[0]!r}; ingest the qrels with their corpus")
    texts = queries.set_index("query_id").text
    judged["score"] = 0.0
    for query_id, group in judged.groupby("query_id", sort=False):
        # bm25s scores every document of the corpus for one query; keep the judged ones.
        tokens = index.retriever.get_tokens_ids(index.tokenize([texts[query_id]])[0])
        judged.loc[group.index, "score"] = index.retriever.get_scores_from_ids(tokens)[position[group.doc_id].to_numpy()]
    return _ranked(judged)


def _ranked(run: pd.DataFrame) -> pd.DataFrame:
    """``run`` (query_id, doc_id, score) ordered by score within each query, ranked, labelled bm25."""
    run = run.sort_values(["query_id", "score", "doc_id"], ascending=[True, False, True])
    run["rank"] = run.groupby("query_id").cumcount().astype("int64") + 1
    run["method"], run["budget"] = "bm25", UNTRAINED_BUDGET
    return run.reset_index(drop=True)
