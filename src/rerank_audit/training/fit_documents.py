"""Cut each training document so that the whole training sequence fits ``max_length``.

TRL would cut a sequence longer than ``max_length`` at its end (losing the answer and the
EOS) or drop the example; ``fit_documents`` cuts the *document* instead, so every sequence
fits whole. A trainer kind without ``fits_documents`` (``lce``) trains on its scorer's own
tokens and is not cut here. Imports no torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rerank_audit.methods import TRAINING_COLUMNS, method as method_spec
from rerank_audit.text import prompts
from rerank_audit.text.truncation import fit_document
from rerank_audit.trainer_kinds import trainer_kind


def training_columns(method: str) -> list[str]:
    """The columns of the method's training table that its trainer reads."""
    return list(TRAINING_COLUMNS[method_spec(method).training_table])


def fit_documents(method: str, data: pd.DataFrame, tokenizer, max_length: int) -> tuple[pd.DataFrame, int]:
    """``data`` with each document cut at its end, at a token boundary, so that every training sequence fits.

    A training sequence is what TRL tokenizes: prompt + completion + EOS (``sft``), prompt +
    chosen + EOS and prompt + rejected + EOS (the others). The documents are inside the
    pointwise prompt for ``sft`` and ``dpo`` (the prompt is parsed and rendered again with
    ``prompts.pointwise_prompt``), and they are chosen and rejected for ``dpo_pairs`` and
    ``reward``. For ``qlm_sft`` the document is the ``document`` column, found verbatim in
    the prompt (the query-likelihood template around it stays), and the completion (the
    query) is never cut. Out: (a copy of ``data`` with the cut texts, number of document
    texts cut). Raises ValueError naming the row when a sequence is too long even with an
    empty document.
    """
    if not trainer_kind(method_spec(method).trainer).fits_documents:
        raise ValueError(f"{method}: its trainer trains on the tokens its scorer reads, cut by the scorer's code, not here")
    eos = tokenizer.eos_token
    query_ids = data["query_id"] if "query_id" in data.columns else ["?"] * len(data)
    names = [f"training example {i} (query {query_id})" for i, query_id in enumerate(query_ids)]
    fitted, truncated = data.copy(), 0
    table = method_spec(method).training_table
    if table in ("sft_examples", "answer_pairs"):
        endings = [[text + eos for text in data[column]] for column in training_columns(method)[1:]]
        too_long = _too_long(tokenizer, [[p + e for p, e in zip(data.prompt, ending)] for ending in endings], max_length)
        parse = _pointwise_parser(tokenizer)
        new_prompts = list(data.prompt)
        for i in np.flatnonzero(too_long):
            query, document = parse(new_prompts[i], names[i])
            for ending in (column[i] for column in endings):  # fit the longest ending: fit each in turn
                document = _cut_to_fit(tokenizer, lambda d: prompts.pointwise_prompt(tokenizer, query, d) + ending, document, max_length, names[i])
            new_prompts[i] = prompts.pointwise_prompt(tokenizer, query, document)
        fitted["prompt"] = new_prompts
        return fitted, int(too_long.sum())
    if table == "query_examples":
        return _fit_query_examples(method, data, tokenizer, max_length, names)
    for column in ("chosen", "rejected"):
        documents = list(data[column])
        too_long = _too_long(tokenizer, [[p + d + eos for p, d in zip(data.prompt, documents)]], max_length)
        for i in np.flatnonzero(too_long):
            prompt = data.prompt.iloc[i]
            documents[i] = _cut_to_fit(tokenizer, lambda d: prompt + d + eos, documents[i], max_length, names[i])
        fitted[column] = documents
        truncated += int(too_long.sum())
    return fitted, truncated


def _fit_query_examples(method: str, data: pd.DataFrame, tokenizer, max_length: int, names: list[str]) -> tuple[pd.DataFrame, int]:
    """``fit_documents`` of query examples: cut each too-long row's ``document`` inside its prompt."""
    if "document" not in data.columns:
        raise ValueError(f"{method}: training data lacks the column 'document' (rebuild query_examples with rule training_data)")
    eos = tokenizer.eos_token
    fitted = data.copy()
    too_long = _too_long(tokenizer, [[p + c + eos for p, c in zip(data.prompt, data.completion)]], max_length)
    new_prompts, new_documents = list(data.prompt), list(data.document)
    for i in np.flatnonzero(too_long):
        prompt, document, completion = new_prompts[i], new_documents[i], data.completion.iloc[i]
        at = prompt.find(document)
        if not document or at < 0:
            raise ValueError(f"{names[i]}: its document is not in its prompt; rebuild query_examples (rule training_data)")
        head, tail = prompt[:at], prompt[at + len(document) :]
        new_documents[i] = _cut_to_fit(tokenizer, lambda d: head + d + tail + completion + eos, document, max_length, names[i])
        new_prompts[i] = head + new_documents[i] + tail
    fitted["prompt"], fitted["document"] = new_prompts, new_documents
    return fitted, int(too_long.sum())


def _too_long(tokenizer, sequences: list[list[str]], max_length: int) -> np.ndarray:
    """Per row: whether any of its sequences (``sequences[k][row]``) has more than ``max_length`` tokens."""
    lengths = [[len(ids) for ids in tokenizer(texts)["input_ids"]] for texts in sequences]
    return (np.array(lengths) > max_length).any(axis=0)


def _cut_to_fit(tokenizer, render, document: str, max_length: int, name: str) -> str:
    """:func:`~rerank_audit.text.truncation.fit_document`, an error naming the example when nothing fits."""
    kept = fit_document(tokenizer, render, document, max_length)
    if kept is None:
        raise ValueError(
            f"{name}: the training sequence has more than max_length={max_length} tokens even without its document; "
            "raise max_length for this method (train.defaults / train.methods)"
        )
    return kept


def _pointwise_parser(tokenizer):
    """A function prompt, name -> (query, document) inverting ``prompts.pointwise_prompt`` for ``tokenizer``.

    The template is located by rendering it with two marker strings; a prompt it does not
    reproduce exactly is an error (tables built for another base model or prompt version).
    """
    query_mark, document_mark = "\x1equery\x1e", "\x1edocument\x1e"
    head, rest = prompts.pointwise_prompt(tokenizer, query_mark, document_mark).split(query_mark)
    middle, tail = rest.split(document_mark)

    def parse(prompt: str, name: str) -> tuple[str, str]:
        found = prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail)
        query, _, document = prompt[len(head) : len(prompt) - len(tail)].partition(middle) if found else ("", "", "")
        if not found or prompts.pointwise_prompt(tokenizer, query, document) != prompt:
            raise ValueError(
                f"{name}: the prompt is not a pointwise prompt of this tokenizer's template, so its document cannot "
                "be cut to fit max_length; rebuild the training tables (rule training_data) with this base model"
            )
        return query, document

    return parse

