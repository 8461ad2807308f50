"""Which (query, document) pairs of a re-ranked run are explained, and what the method decided.

The *head* of a query is the list the method actually re-scored: the run's rows with rank <=
``rerank.depth`` (below it the run keeps BM25's order; depth None: the whole run, for a pool
that is re-scored whole). The method's decision is read within its head (``model_decisions``):
upper half relevant, lower half not. The ``top_documents`` best and the ``bottom_documents``
worst documents of each head are explained, so the explained pairs hold both decisions and a
rationale's verdict can agree or disagree with either.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rerank_audit.explain.rationale import model_decisions
from rerank_audit.text.prompts import corpus_texts

TOP, BOTTOM = "top", "bottom"


def reranked_head(run: pd.DataFrame, depth: int | None) -> pd.DataFrame:
    """The rows of ``run`` (query_id, doc_id, score, rank) that the method re-scored: rank <= ``depth``.

    ``depth`` None keeps every row. Adds head_size (int, the query's number of head rows) and
    relevant (bool, the method's decision within its head).
    """
    head = run if depth is None else run[run["rank"] <= depth]
    head = head.assign(head_size=head.groupby("query_id")["rank"].transform("size").astype("int64"))
    return head.assign(relevant=model_decisions(head))


def explained_end(head: pd.DataFrame, top_documents: int, bottom_documents: int | None) -> pd.Series:
    """Which end of its head each row of ``head`` (as from ``reranked_head``) is explained from.

    "top" for ranks 1..``top_documents``, "bottom" for the last ``bottom_documents`` ranks
    (None: as many as ``top_documents``), None for the rows in between. In a head shorter than
    top + bottom a document that is both counts as "top": no pair is explained twice.
    """
    bottom = top_documents if bottom_documents is None else bottom_documents
    from_last = head.head_size - head["rank"]  # 0 for the last document of the head
    end = np.where(head["rank"] <= top_documents, TOP, np.where(from_last < bottom, BOTTOM, None))
    return pd.Series(end, index=head.index, name="end", dtype="object")


def explained_head(run: pd.DataFrame, depth: int | None, top_documents: int, bottom_documents: int | None) -> pd.DataFrame:
    """The explained rows of every query's head: ``reranked_head`` plus ``end`` ("top" / "bottom"), in run order."""
    head = reranked_head(run, depth)
    head = head.assign(end=explained_end(head, top_documents, bottom_documents))
    return head[head.end.notna()]


def pairs_to_explain(
    run: pd.DataFrame,
    splits: pd.DataFrame,
    queries: pd.DataFrame,
    corpus: pd.DataFrame,
    *,
    n_queries: int | str,
    top_documents: int,
    bottom_documents: int | None,
    depth: int | None,
) -> pd.DataFrame:
    """The top and bottom documents of each head of the first ``n_queries`` test queries (split order, or "all").

    Every method explains the same queries (the split order does not depend on the method),
    so their explanations compare on the same ground. ``depth``: rerank.depth (see the module
    docstring). Returns (query_id, doc_id, rank, score, end, relevant, query, document) in
    query then rank order; ``document`` is the text the scorer reads.
    """
    test = splits[splits.split == "test"].sort_values("position").query_id
    if str(n_queries) != "all" and int(n_queries) > len(test):
        raise ValueError(
            f"explain.queries (or datasets.<name>.explain_queries) is {n_queries}, but the split has {len(test)} test queries; lower it or write all"
        )
    chosen = test.tolist() if str(n_queries) == "all" else test.head(int(n_queries)).tolist()
    order = {query_id: i for i, query_id in enumerate(chosen)}
    explained = explained_head(run[run.query_id.isin(order)], depth, top_documents, bottom_documents)
    explained = explained.assign(order=explained.query_id.map(order)).sort_values(["order", "rank"])
    return pd.DataFrame(
        {
            "query_id": explained.query_id.to_numpy(),
            "doc_id": explained.doc_id.to_numpy(),
            "rank": explained["rank"].to_numpy(),
            "score": explained.score.to_numpy(),
            "end": explained.end.to_numpy(),
            "relevant": explained.relevant.to_numpy(),
            "query": queries.set_index("query_id").text.reindex(explained.query_id).to_numpy(),
            "document": corpus_texts(corpus, explained.doc_id),
        }
    )


def rationale_items(keywords: pd.DataFrame, explained: pd.DataFrame, queries: pd.DataFrame, corpus: pd.DataFrame) -> pd.DataFrame:
    """What the rationale writer receives for each explained pair.

    ``keywords``: top-K attribution rows (query_id, doc_id, token, attribution, ordered by
    importance); ``explained``: the method's explained head rows (``explained_head``: rank,
    score, head_size, relevant, end). Returns one row per pair: query_id, doc_id, rank, score,
    head_size, relevant, end, query, document, keywords (list of words) and attributions
    (their signed values). A keyword pair missing from ``explained`` is an error.
    """
    grouped = keywords.groupby(["query_id", "doc_id"], sort=False).agg(keywords=("token", list), attributions=("attribution", list)).reset_index()
    columns = ["query_id", "doc_id", "rank", "score", "head_size", "relevant", "end"]
    items = grouped.merge(explained[columns], on=["query_id", "doc_id"], how="left", validate="one_to_one")
    unknown = items[items.end.isna()]
    if len(unknown):
        first = unknown.iloc[0]
        raise ValueError(
            f"{len(unknown)} keyword pair(s), e.g. ({first.query_id}, {first.doc_id}), are not among the explained top / bottom "
            "documents of the run's re-ranked head; re-run the explain rule with the same rerank.depth and "
            "explain.top_documents / bottom_documents"
        )
    items["query"] = queries.set_index("query_id").text.reindex(items.query_id).to_numpy()
    items["document"] = corpus_texts(corpus, items.doc_id)
    return items.astype({"rank": "int64", "head_size": "int64", "relevant": "bool"})
