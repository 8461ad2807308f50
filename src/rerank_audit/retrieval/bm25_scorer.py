"""BM25 as a pair scorer: the lexical reference of the shortcut probes.

``BM25PairScorer.score_pairs`` scores any (query, document) texts, documents that are not in
the index included (the edited copies of indexed ones), with Lucene's BM25, the variant
bm25s computes, from the corpus statistics of the indexed collection (its number of
documents N, document frequencies df, mean document length avgdl) and the scored document's
own term frequencies tf and length dl:

    score(q, d) = sum over the tokens t of q:  idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * dl / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Tokens are the index's own (``BM25Index.tokenize``: stop words removed, stemmed); a query
token counts as often as the query repeats it (as in bm25s), a token the collection lacks has
no idf and adds nothing, and dl counts every token of the document, known or not. On an
indexed document the score is bm25s's own (in float64; bm25s stores float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from rerank_audit.retrieval.bm25 import BM25Index
from rerank_audit.text.prompts import document_text

# The bm25s variant this module computes (bm25s.BM25's default, the one ``bm25_index`` builds).
BM25_VARIANT = "lucene"


@dataclass(frozen=True)
class BM25PairScorer:
    """BM25 of arbitrary (query, document) texts with a fixed collection's statistics (module docstring).

    ``idf``: float64 per vocabulary id of ``index``; ``avgdl``: mean indexed document length
    in tokens; ``k1``, ``b``: the index's parameters.
    """

    index: BM25Index
    idf: np.ndarray
    avgdl: float
    k1: float
    b: float

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """BM25 of each (query, document) pair, float64 array of len(queries).

        ``documents`` as the index read them (``prompts.document_text(title, text)``).
        """
        if len(queries) != len(documents):
            raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
        query_counts, _ = self._term_counts(queries)
        term_frequencies, lengths = self._term_counts(documents)
        # tf at every (pair, term) where the query has the term and the document holds it.
        hits = term_frequencies.multiply(query_counts > 0).tocoo()
        repeats = np.asarray(query_counts[hits.row, hits.col]).ravel()
        norm = self.k1 * (1 - self.b + self.b * lengths / self.avgdl)
        terms = repeats * self.idf[hits.col] * hits.data / (hits.data + norm[hits.row])
        return np.bincount(hits.row, weights=terms, minlength=len(queries)).astype(np.float64)

    def _term_counts(self, texts: Sequence[str]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """(texts x vocabulary count matrix of the known tokens, float64 length of each text in tokens)."""
        tokens = self.index.tokenize(list(texts))
        vocabulary = self.index.retriever.vocab_dict
        ids = [[vocabulary[t] for t in text if t in vocabulary] for text in tokens]
        rows = np.repeat(np.arange(len(ids)), [len(i) for i in ids])
        columns = np.fromiter((i for text in ids for i in text), dtype=np.int64, count=len(rows))
        counts = sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(ids), len(self.idf)))
        return counts, np.array([len(t) for t in tokens], dtype=np.float64)


def bm25_pair_scorer(index: BM25Index, corpus: pd.DataFrame) -> BM25PairScorer:
    """The pair scorer of ``index``, with the statistics of ``corpus`` (doc_id, title, text), the table it indexed.

    ValueError when the index is not Lucene BM25 or ``corpus`` is not the indexed collection
    (other documents, or other tokens than the index's vocabulary).
    """
    retriever = index.retriever
    if (retriever.method, retriever.idf_method) != (BM25_VARIANT, BM25_VARIANT):
        raise ValueError(f"the probe scorer computes {BM25_VARIANT!r} BM25; the index uses {retriever.method!r} (idf {retriever.idf_method!r})")
    if list(corpus.doc_id) != list(index.doc_ids):
        raise ValueError(f"corpus of {len(corpus)} documents is not the indexed one ({len(index.doc_ids)} documents): pass the table bm25_index read")
    tokens = index.tokenize([document_text(t, x) for t, x in zip(corpus.title, corpus.text)])
    vocabulary = retriever.vocab_dict
    unknown = {t for text in tokens for t in text} - set(vocabulary)
    if unknown:
        raise ValueError(f"corpus has {len(unknown)} token(s) the index does not know, e.g. {sorted(unknown)[0]!r}: pass the table bm25_index read")
    size = max(vocabulary.values()) + 1
    # df: documents holding each term, from each document's distinct term ids.
    distinct = np.concatenate([np.unique([vocabulary[t] for t in text]) for text in tokens if text] or [np.zeros(0, np.int64)])
    df = np.bincount(distinct.astype(np.int64), minlength=size).astype(np.float64)
    n_documents = len(tokens)
    idf = np.log(1 + (n_documents - df + 0.5) / (df + 0.5))
    avgdl = float(np.mean([len(text) for text in tokens]))
    return BM25PairScorer(index=index, idf=idf, avgdl=avgdl, k1=float(retriever.k1), b=float(retriever.b))
