"""Words: the unit that attributions, faithfulness and rationale metrics talk about.

A *word* is a maximal run of non-whitespace characters, punctuation kept attached
("glaciers," is one word). Positions are word indices (0-based) within their text.
Masking a word removes it together with the whitespace that follows it, so keeping every
word gives back the original text (stripped) and the model's score is unchanged.

To decide whether two words are "the same" (query overlap, keyword mentions, support of a
rationale word) they are compared by *key*: lowercased, leading and trailing punctuation
stripped, then Snowball-English stemmed (PyStemmer, as in BM25), so "Glaciers," and
"glacier" match.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable, Sequence

import Stemmer

_SEGMENT = re.compile(r"\S+\s*")
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")

# Function words that carry no topical content (a common English list, NLTK-like, with the
# apostrophe-free forms that the edge-punctuation strip leaves behind).
STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been before being below
    between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
    few for from further had hadn't has hasn't have haven't having he her here hers herself him himself his how
    i if in into is isn't it it's its itself just let's me more most mustn't my myself no nor not now of off on
    once only or other ought our ours ourselves out over own same shan't she should shouldn't so some such than
    that that's the their theirs them themselves then there there's these they this those through to too under
    until up very was wasn't we were weren't what what's when where which while who whom why will with won't
    would wouldn't you your yours yourself yourselves also may might must shall upon whether within without
    """.split()
)


def word_segments(text: str) -> list[str]:
    """The words of ``text``, each with the whitespace that follows it (joins back to the text)."""
    return _SEGMENT.findall(text.strip())


def split_words(text: str) -> list[str]:
    """The words of ``text`` (whitespace-separated, punctuation attached), in order."""
    return [segment.rstrip() for segment in word_segments(text)]


def join_kept(segments: Sequence[str], keep: Iterable[bool]) -> str:
    """The text made of the ``segments`` whose ``keep`` flag is true (masked words removed)."""
    return "".join(segment for segment, kept in zip(segments, keep) if kept).strip()


@functools.lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def bare_word(word: str) -> str:
    """``word`` lowercased, its edge punctuation stripped (what stop-word lists are matched against)."""
    return _EDGE_PUNCTUATION.sub("", word.lower())


def word_key(word: str) -> str:
    """The matching key of a word: lowercased, edge punctuation stripped, stemmed ("" if none left)."""
    bare = bare_word(word)
    return _stemmer().stemWord(bare) if bare else ""


def content_keys(text: str) -> set[str]:
    """Keys of the content words of ``text`` (stop words and punctuation-only words left out)."""
    keys = set()
    for word in split_words(text):
        bare = bare_word(word)
        if bare and bare not in STOP_WORDS:
            keys.add(word_key(bare))
    return keys


def is_content_word(word: str) -> bool:
    """Whether ``word`` has letters or digits and is not a stop word."""
    bare = bare_word(word)
    return bool(bare) and bare not in STOP_WORDS
