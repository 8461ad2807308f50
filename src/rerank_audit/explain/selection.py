"""Which (query, document) pairs of a re-ranked run are explained."""

from __future__ import annotations

import pandas as pd

from rerank_audit.models.prompts import corpus_texts


def pairs_to_explain(run: pd.DataFrame, splits: pd.DataFrame, queries: pd.DataFrame, corpus: pd.DataFrame, n_queries: int | str, top_documents: int) -> pd.DataFrame:
    """The top ``top_documents`` of the first ``n_queries`` test queries (in split order, or "all").

    Every method explains the same queries (the split order does not depend on the method),
    so their explanations compare on the same ground. Returns (query_id, doc_id, rank, score,
    query, document) in query then rank order; ``document`` is the text the scorer reads.
    """
    test = splits[splits.split == "test"].sort_values("position").query_id
    chosen = test.tolist() if str(n_queries) == "all" else test.head(int(n_queries)).tolist()
    order = {query_id: i for i, query_id in enumerate(chosen)}
    top = run[run.query_id.isin(order) & (run["rank"] <= top_documents)]
    top = top.assign(order=top.query_id.map(order)).sort_values(["order", "rank"])
    return pd.DataFrame(
        {
            "query_id": top.query_id.to_numpy(),
            "doc_id": top.doc_id.to_numpy(),
            "rank": top["rank"].to_numpy(),
            "score": top.score.to_numpy(),
            "query": queries.set_index("query_id").text.reindex(top.query_id).to_numpy(),
            "document": corpus_texts(corpus, top.doc_id),
        }
    )


def rationale_items(keywords: pd.DataFrame, run: pd.DataFrame, queries: pd.DataFrame, corpus: pd.DataFrame) -> pd.DataFrame:
    """What the rationale writer receives for each explained pair.

    ``keywords``: top-K attribution rows (query_id, doc_id, token, attribution, ordered by
    importance); ``run``: the method's run with a boolean ``relevant`` decision column.
    Returns one row per pair: query_id, doc_id, rank, score, relevant, query, document,
    keywords (list of words) and attributions (their signed values).
    """
    grouped = keywords.groupby(["query_id", "doc_id"], sort=False).agg(keywords=("token", list), attributions=("attribution", list)).reset_index()
    items = grouped.merge(run[["query_id", "doc_id", "rank", "score", "relevant"]], on=["query_id", "doc_id"], how="left")
    items["query"] = queries.set_index("query_id").text.reindex(items.query_id).to_numpy()
    items["document"] = corpus_texts(corpus, items.doc_id)
    return items
