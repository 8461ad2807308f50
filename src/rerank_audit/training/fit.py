"""Did a trained re-ranker learn anything? Its pairwise accuracy on its own training pairs.

A training pair is (query, document it should score higher, document it should score lower):

- ``dpo_pairs``, ``reward``: the rows of their document-pairs table (chosen over rejected);
- ``sft`` (``sft examples``, ``label``) and ``dpo`` (answer pairs: label = the chosen answer is the
  relevant one): within each query, every relevant document over every non-relevant one;
- ``qlm_sft``: none (its query examples are positives only), so no accuracy.

The accuracy is the share of pairs whose higher document gets the higher score, ties 0.5, from
the method's own scorer and from the untrained model of the same scoring family on the same
pairs (``UNTRAINED_COUNTERPART``): a trained model that does not beat the untrained one on the
pairs it was trained on learned nothing usable.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from rerank_audit.models.prompts import corpus_texts
from rerank_audit.models.scoring import UNTRAINED_REFERENCE
from rerank_audit.models.scorer import Scorer

PAIR_COLUMNS = ["query_id", "chosen_doc_id", "rejected_doc_id"]
# Methods whose training table holds no (higher, lower) document pairs, and why.
NO_PAIRS = {"qlm_sft": "its training table (query examples) holds relevant documents only: no pairs to rank"}
# Methods whose family has no untrained scorer of their pairs, and what stands in for its accuracy.
NO_COUNTERPART = {
    # The implicit reward β·(log π − log π_ref) of the untrained model (π = π_ref) is 0 for every pair.
    "dpo_pairs": (0.5, "the untrained model is its own reference, so its implicit reward is 0 for every pair (all ties)"),
    "reward": (None, "the untrained base model has no trained reward head"),
}
# The untrained scorer of each other trained method's family (the ranking comparison's reference).
UNTRAINED_COUNTERPART = {m: r for m, r in UNTRAINED_REFERENCE.items() if m not in NO_COUNTERPART}


def training_pairs(method: str, table: pd.DataFrame, relevant_answer: str | None = None) -> pd.DataFrame:
    """The (query_id, chosen_doc_id, rejected_doc_id) pairs ``method`` was trained to order.

    In: the method's training table (``sft examples`` for sft; answer pairs for dpo, whose
    ``chosen`` equals ``relevant_answer`` on relevant documents; document pairs for dpo_pairs
    and reward). Out: one row per pair; for sft and dpo every (relevant, non-relevant) document
    pair of each query, in table order (a document listed twice for a query counts once).
    Raises ValueError for a method in ``NO_PAIRS`` or an unknown one, and for dpo without
    ``relevant_answer``.
    """
    if method in NO_PAIRS:
        raise ValueError(f"{method}: {NO_PAIRS[method]}")
    if method in ("dpo_pairs", "reward"):
        return table[PAIR_COLUMNS].reset_index(drop=True)
    if method == "sft":
        labels = table.label.astype(bool)
    elif method == "dpo":
        if relevant_answer is None:
            raise ValueError("dpo pairs need relevant_answer, the answer its relevant documents were trained on")
        labels = table.chosen == relevant_answer
        table = table.rename(columns={"chosen_doc_id": "doc_id"})
    else:
        raise ValueError(f"no training pairs for method {method!r}")
    labelled = pd.DataFrame({"query_id": table.query_id, "doc_id": table.doc_id, "relevant": labels}).drop_duplicates()
    relevant = labelled[labelled.relevant][["query_id", "doc_id"]]
    others = labelled[~labelled.relevant][["query_id", "doc_id"]]
    pairs = relevant.merge(others, on="query_id", suffixes=("_chosen", "_rejected"))
    return pairs.set_axis(PAIR_COLUMNS, axis=1).reset_index(drop=True)


def pairwise_accuracy(scorer: Scorer, pairs: pd.DataFrame, queries: pd.DataFrame, corpus: pd.DataFrame) -> float:
    """Share of ``pairs`` whose chosen document outscores the rejected one for the query (ties 0.5).

    In: pairs (query_id, chosen_doc_id, rejected_doc_id), queries (query_id, text), the corpus
    (doc_id, title, text). Each distinct (query, document) is scored once, all in one
    ``score_pairs`` call (``prompts.document_text`` of the document). NaN without pairs;
    ValueError naming the ids missing from the queries or the corpus.
    """
    if pairs.empty:
        return math.nan
    _check_known(pairs.query_id, queries.query_id, "query ids", "queries")
    _check_known(pd.concat([pairs.chosen_doc_id, pairs.rejected_doc_id]), corpus.doc_id, "doc ids", "corpus")
    scored = pd.concat(
        [pairs[["query_id", column]].set_axis(["query_id", "doc_id"], axis=1) for column in PAIR_COLUMNS[1:]]
    ).drop_duplicates(ignore_index=True)
    texts = queries.set_index("query_id").text.reindex(scored.query_id).tolist()
    scores = np.asarray(scorer.score_pairs(texts, corpus_texts(corpus, scored.doc_id)), dtype="float64")
    score = pd.Series(scores, index=pd.MultiIndex.from_frame(scored))
    chosen = score.reindex(pd.MultiIndex.from_arrays([pairs.query_id, pairs.chosen_doc_id])).to_numpy()
    rejected = score.reindex(pd.MultiIndex.from_arrays([pairs.query_id, pairs.rejected_doc_id])).to_numpy()
    return float(np.mean(np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))))


def training_fit(
    method: str,
    budget: str,
    table: pd.DataFrame,
    queries: pd.DataFrame,
    corpus: pd.DataFrame,
    record: Mapping[str, Any],
    load_scorer,
    relevant_answer: str | None = None,
) -> dict[str, Any]:
    """The training-fit record of one trained model (the rule training_fit's JSON).

    In: the method, its budget and training table, the queries and corpus it was built from,
    its ``training_config.json`` as a dict (``steps``, ``loss_first``, ``loss_last``), and
    ``load_scorer(method)`` -> the scorer of ``method`` (the trained one for ``method``, the
    base model's for its ``UNTRAINED_COUNTERPART``); it is called only where pairs are scored.
    Out: a dict with method, budget, pairs, accuracy, base_accuracy (None where not
    defined), loss_first, loss_last, steps, and ``note`` / ``base_note`` saying why a value
    is None or fixed.
    """
    fit = {"method": method, "budget": str(budget), "pairs": 0, "accuracy": None, "base_accuracy": None, "note": None, "base_note": None}
    fit |= {key: record.get(key) for key in ("loss_first", "loss_last", "steps")}
    if method in NO_PAIRS:
        return fit | {"note": NO_PAIRS[method], "base_note": NO_PAIRS[method]}
    pairs = training_pairs(method, table, relevant_answer)
    fit["pairs"] = len(pairs)
    if pairs.empty:
        return fit | {"note": "the training table yields no pairs", "base_note": "the training table yields no pairs"}
    fit["accuracy"] = pairwise_accuracy(load_scorer(method), pairs, queries, corpus)
    if method in UNTRAINED_COUNTERPART:
        fit["base_accuracy"] = pairwise_accuracy(load_scorer(UNTRAINED_COUNTERPART[method]), pairs, queries, corpus)
    else:
        fit["base_accuracy"], fit["base_note"] = NO_COUNTERPART[method]
    return fit


def _check_known(ids: pd.Series, known: pd.Series, what: str, table: str) -> None:
    missing = sorted(set(ids) - set(known))
    if missing:
        raise ValueError(
            f"training pairs name {len(missing)} {what} not in the {table} table: {missing[:5]}; "
            "the training table was built from other data: re-run rule training_data"
        )
