"""BM25 throughput: bm25s (sparse, vectorised) vs. rank-bm25 (per-query Python) on CLIMATE-FEVER.

Both engines get the same tokens (bm25s's tokenizer with English stemming and stop words)
and the same k1/b and BM25 variant (Robertson's, as rank-bm25's BM25Okapi), so the figures
compare indexing and scoring only. Also checks that both
return the same top document for most claims.

    .venv/bin/python bench/bm25.py [--claims ../shared/data/climate-fever/climate-fever.jsonl]
"""

from __future__ import annotations

import argparse
import time

import bm25s
import numpy as np
import Stemmer
from rank_bm25 import BM25Okapi

from rerank_audit.data.ingest import read_collection
from rerank_audit.text.prompts import document_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", default="../shared/data/climate-fever/climate-fever.jsonl")
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args()
    collection = read_collection("climate-fever", claims=args.claims)
    stemmer = Stemmer.Stemmer("english")
    tokenize = lambda texts: bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)  # noqa: E731
    doc_tokens = tokenize([document_text(t, x) for t, x in zip(collection.corpus.title, collection.corpus.text)])
    query_tokens = tokenize(collection.queries.text.tolist())
    n_docs, n_queries = len(doc_tokens), len(query_tokens)
    print(f"CLIMATE-FEVER: {n_docs} documents, {n_queries} claims, k={args.k}")

    start = time.perf_counter()
    fast = bm25s.BM25(k1=1.2, b=0.75, method="robertson")
    fast.index(doc_tokens, show_progress=False)
    fast_index = time.perf_counter() - start
    start = time.perf_counter()
    fast_top, _ = fast.retrieve(query_tokens, k=args.k, show_progress=False, n_threads=1)
    fast_retrieve = time.perf_counter() - start

    start = time.perf_counter()
    slow = BM25Okapi(doc_tokens, k1=1.2, b=0.75)
    slow_index = time.perf_counter() - start
    start = time.perf_counter()
    slow_top = np.stack([np.argsort(-slow.get_scores(q), kind="stable")[: args.k] for q in query_tokens])
    slow_retrieve = time.perf_counter() - start

    agree = np.mean(fast_top[:, 0] == slow_top[:, 0])
    print(f"{'engine':<10} {'index s':>8} {'retrieve s':>11} {'claims/s':>10}")
    for name, index_s, retrieve_s in [("bm25s", fast_index, fast_retrieve), ("rank-bm25", slow_index, slow_retrieve)]:
        print(f"{name:<10} {index_s:>8.3f} {retrieve_s:>11.3f} {n_queries / retrieve_s:>10.1f}")
    print(f"speed-up bm25s / rank-bm25: index {slow_index / fast_index:.1f}x, retrieval {slow_retrieve / fast_retrieve:.1f}x")
    print(f"same top-1 document: {agree:.1%} of claims (rank-bm25 uses its own idf floor, so a few differ)")


if __name__ == "__main__":
    main()
