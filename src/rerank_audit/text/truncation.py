"""Cutting a document so that the prompt around it fits a token budget: one rule for training and scoring.

Only the document shrinks, at its end and on one of its own token boundaries; whatever the
prompt puts around it (instruction, query, answer, EOS) stays whole. Training (TRL) and
scoring cut with this one function, so a model is scored on the tokens it was trained on.
"""

from __future__ import annotations

from typing import Callable


def fit_document(tokenizer, render: Callable[[str], str], document: str, max_length: int | None, length: int | None = None) -> str | None:
    """The longest prefix of ``document`` (ending on one of its token boundaries) whose ``render`` fits.

    ``render(prefix)`` is the whole sequence; its tokens are counted with the tokenizer's
    default special tokens, as TRL and the scorers count them, and must be at most
    ``max_length`` (None: no limit). ``length``: the token count of ``render(document)`` when
    the caller already has it. Returns ``document`` itself when it fits, None when even
    ``render("")`` does not fit (the caller decides whether that is an error).

    Cutting as many document tokens as the sequence is over nearly always fits at once; a
    binary search (a shorter prefix never renders longer) covers tokens that merge
    differently at the cut.
    """
    count = lambda text: len(tokenizer(text)["input_ids"])  # noqa: E731
    if max_length is None or (length if length is not None else count(render(document))) <= max_length:
        return document
    ends = [end for _, end in tokenizer(document, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    prefix = lambda kept: document[: ends[kept - 1]] if kept else ""  # noqa: E731
    fits = lambda kept: count(render(prefix(kept))) <= max_length  # noqa: E731
    if not fits(0):
        return None
    over = (length if length is not None else count(render(document))) - max_length
    guess = max(0, len(ends) - over)
    low, high = 0, len(ends)  # fits(low); the answer lies in [low, high]
    if fits(guess):
        if guess == high or not fits(guess + 1):
            return prefix(guess)
        low = guess + 1
    else:
        high = guess - 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return prefix(low)
