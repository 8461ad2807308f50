"""Did a trained re-ranker learn anything? Its pairwise accuracy on its own training pairs.

A training pair is (query, document it should score higher, document it should score lower):

- document pairs (dpo_pairs, reward): the rows (chosen over rejected);
- sft examples (``label``) and answer pairs (label = the chosen answer is the relevant one):
  within each query, every relevant document over every non-relevant one;
- lce groups (qlm_lce): each group's relevant document (position 0) over each of its negatives;
- query examples (qlm_sft): none (positives only), so no accuracy.

The accuracy is the share of pairs whose higher document gets the higher score, ties 0.5, from
the method's own scorer and from its untrained counterpart (:mod:`rerank_audit.methods`) on the
same pairs, where that counterpart scores with the same family: a trained model that does not
beat the untrained one on the pairs it was trained on learned nothing usable.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from rerank_audit.methods import method as method_spec
from rerank_audit.models.scorer import Scorer
from rerank_audit.text.prompts import corpus_texts

PAIR_COLUMNS = ["query_id", "chosen_doc_id", "rejected_doc_id"]
# Training tables that hold no (higher, lower) document pairs, and why.
NO_PAIRS = {"query_examples": "its training table (query examples) holds relevant documents only: no pairs to rank"}
# Scoring families whose untrained form scores no pairs, and what stands in for its accuracy.
NO_UNTRAINED_SCORER = {
    # The implicit reward β·(log π − log π_ref) of the untrained model (π = π_ref) is 0 for every pair.
    "document": (0.5, "the untrained model is its own reference, so its implicit reward is 0 for every pair (all ties)"),
    "reward": (None, "the untrained base model has no trained reward head"),
}


def untrained_scorer_method(method: str) -> str | None:
    """The untrained method whose scorer reads ``method``'s pairs the same way (its counterpart of the
    same family), or None where the family's untrained form scores nothing (``NO_UNTRAINED_SCORER``)."""
    spec = method_spec(method)
    if spec.family in NO_UNTRAINED_SCORER:
        return None
    if spec.untrained is None or method_spec(spec.untrained).family != spec.family:
        raise ValueError(f"{method}: no untrained counterpart of family {spec.family!r}; add one to rerank_audit.methods or to NO_UNTRAINED_SCORER")
    return spec.untrained


def training_pairs(method: str, table: pd.DataFrame, relevant_answer: str | None = None) -> pd.DataFrame:
    """The (query_id, chosen_doc_id, rejected_doc_id) pairs ``method`` was trained to order.

    In: the method's training table (``sft examples`` for sft; answer pairs for dpo, whose
    ``chosen`` equals ``relevant_answer`` on relevant documents; document pairs for dpo_pairs
    and reward). Out: one row per pair; for sft and dpo every (relevant, non-relevant) document
    pair of each query, in table order (a document listed twice for a query counts once);
    for qlm_lce (lce groups) each group's relevant document over each of its negatives, in
    group order (a pair two groups share counts once).
    Raises ValueError for a method whose table is in ``NO_PAIRS`` or an unknown one, and for
    answer pairs without ``relevant_answer``.
    """
    kind = method_spec(method).training_table
    if kind in NO_PAIRS:
        raise ValueError(f"{method}: {NO_PAIRS[kind]}")
    if kind == "document_pairs":
        return table[PAIR_COLUMNS].reset_index(drop=True)
    if kind == "lce_groups":
        relevant = table[table.position == 0][["group", "query_id", "doc_id"]]
        negatives = table[table.position > 0][["group", "doc_id"]]
        pairs = relevant.merge(negatives, on="group", suffixes=("_chosen", "_rejected"))[["query_id", "doc_id_chosen", "doc_id_rejected"]]
        return pairs.set_axis(PAIR_COLUMNS, axis=1).drop_duplicates(ignore_index=True)
    if kind == "sft_examples":
        labels = table.label.astype(bool)
    elif kind == "answer_pairs":
        if relevant_answer is None:
            raise ValueError(f"{method}: answer pairs need relevant_answer, the answer its relevant documents were trained on")
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
    base model's for its ``untrained_scorer_method``); it is called only where pairs are scored.
    Out: a dict with method, budget, pairs, accuracy, base_accuracy (None where not
    defined), loss_first, loss_last, steps, and ``note`` / ``base_note`` saying why a value
    is None or fixed (``note`` also says when model selection kept the untrained model).
    """
    fit = {"method": method, "budget": str(budget), "pairs": 0, "accuracy": None, "base_accuracy": None, "note": None, "base_note": None}
    fit |= {key: record.get(key) for key in ("loss_first", "loss_last", "steps")}
    choice = (record.get("selection") or {}).get("choice")
    if choice is not None and not choice["trained"]:
        fit["note"] = "model selection kept the untrained model (no checkpoint beat step 0 on dev): it scores as the base model"
    kind = method_spec(method).training_table
    if kind in NO_PAIRS:
        return fit | {"note": fit["note"] or NO_PAIRS[kind], "base_note": NO_PAIRS[kind]}
    pairs = training_pairs(method, table, relevant_answer)
    fit["pairs"] = len(pairs)
    if pairs.empty:
        return fit | {"note": "the training table yields no pairs", "base_note": "the training table yields no pairs"}
    fit["accuracy"] = pairwise_accuracy(load_scorer(method), pairs, queries, corpus)
    counterpart = untrained_scorer_method(method)
    if counterpart is not None:
        fit["base_accuracy"] = pairwise_accuracy(load_scorer(counterpart), pairs, queries, corpus)
    else:
        fit["base_accuracy"], fit["base_note"] = NO_UNTRAINED_SCORER[method_spec(method).family]
    return fit


def _check_known(ids: pd.Series, known: pd.Series, what: str, table: str) -> None:
    missing = sorted(set(ids) - set(known))
    if missing:
        raise ValueError(
            f"training pairs name {len(missing)} {what} not in the {table} table: {missing[:5]}; "
            "the training table was built from other data: re-run rule training_data"
        )
