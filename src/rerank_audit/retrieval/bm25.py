"""BM25 first stage with bm25s (sparse, numpy, batched) over title + text."""

from __future__ import annotations

from dataclasses import dataclass

import bm25s
import numpy as np
import pandas as pd
import Stemmer

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.models.prompts import document_text


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
    run = run[run.score > 0].sort_values(["query_id", "score", "doc_id"], ascending=[True, False, True])
    run["rank"] = run.groupby("query_id").cumcount().astype("int64") + 1
    run["method"], run["budget"] = "bm25", UNTRAINED_BUDGET
    return run.reset_index(drop=True)
