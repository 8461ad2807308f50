"""The shortcut probes' edits: each a pure function from a document text to its edited copy.

A probe (ABNIRML, MacAvaney et al., TACL 2022) changes one property of a document and nothing
else, so how far a ranker's score moves says how much it responds to that property. The
texts are documents as the models read them (``prompts.document_text``: "title: text");
words are those of :mod:`rerank_audit.text.words` (whitespace-separated, punctuation attached).

| edit                  | what changes                                                     | BM25 (by its formula)          |
|-----------------------|------------------------------------------------------------------|--------------------------------|
| ``stuff_query_words`` | the query's content words appended once each (TFC1)              | rises (query-term tf up)       |
| ``shuffle_words``     | the words in a seeded random order                               | exactly 0 (a bag of words)     |
| ``repeat_document``   | the document twice (LNC1)                                        | rises (when b < 1)             |
| ``append_distractor`` | one off-topic sentence appended (chosen in ``responses``)        | falls (longer; 0 without a query term) |
| ``insert_marker_word``| a known-answer control's marker inserted once                    | falls (one token longer; the marker matches no query term) |

None of the edits makes a document more relevant: a stuffed non-relevant document stays
non-relevant, the others keep their content. A ranker whose score moves where BM25's does not
responds to something other than term statistics; one that moves with stuffing as BM25 does
ranks by query words.

The stance probe edits nothing (it compares SUPPORTS with REFUTES evidence): see ``responses``.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from rerank_audit.data.control import insert_marker
from rerank_audit.text.words import is_content_word, split_words, word_key

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def query_content_words(query: str) -> list[str]:
    """The content words of ``query`` as it writes them, the first of each key only, in query order."""
    seen, words = set(), []
    for word in split_words(query):
        key = word_key(word)
        if is_content_word(word) and key not in seen:
            seen.add(key)
            words.append(word)
    return words


def stuff_query_words(document: str, query: str) -> str:
    """``document`` with ``query_content_words(query)`` appended, separated by single spaces."""
    return " ".join([document.strip(), *query_content_words(query)]).strip()


def shuffle_words(document: str, seed: int) -> str:
    """The words of ``document`` in the order of a permutation drawn from ``numpy.random.default_rng(seed)``, joined by spaces."""
    words = split_words(document)
    return " ".join(words[i] for i in np.random.default_rng(seed).permutation(len(words)))


def repeat_document(document: str) -> str:
    """``document`` twice, separated by one space."""
    document = document.strip()
    return f"{document} {document}"


def sentences(text: str) -> list[str]:
    """The sentences of ``text``: split after ".", "!" or "?" followed by whitespace; empty ones left out."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def append_distractor(document: str, candidates: Sequence[str], seed: int) -> str | None:
    """``document`` with one of ``candidates`` (sentences) appended, drawn with ``seed``; None without candidates."""
    if not len(candidates):
        return None
    sentence = candidates[int(np.random.default_rng(seed).integers(len(candidates)))]
    return f"{document.strip()} {sentence}"


def insert_marker_word(document: str, marker: str, seed: int, doc_id: str) -> str:
    """``document`` with ``marker`` inserted once as a word, where a control with ``seed`` would put it in ``doc_id`` (``control.insert_marker``)."""
    return insert_marker(document, marker, seed, doc_id)[0]
