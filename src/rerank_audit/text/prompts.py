"""The prompts every method shares, so that methods differ only in how they were trained.

Two prompt families:
- *pointwise* (zeroshot, sft, dpo): the query and one document, then the question whether
  the document is relevant; the assistant turn opens with ``ANSWER_PREFIX`` and the model
  answers with one word, a case/space variant of yes or no (``ANSWER_WORDS``).
- *document* (dpo_pairs, reward): the query as the user turn, the document as the
  assistant turn; a model learns which document it prefers to "answer" with.

In both, the instruction and the query come before the document: everything up to the
document depends only on the query, so the scorer encodes that prefix once per query and
reuses it for all candidates (the per-candidate suffix is the document and the template's
closing tokens).
"""

from __future__ import annotations

from typing import Sequence

ANSWER_WORDS = ("yes", "no")  # the scorer sums every case and leading-space variant of each
# The assistant turn starts with this, so that the next token is the answer: without it the
# bundled SmolLM2-135M-Instruct puts 0.37 of its mass on the yes/no variants (0.25 on "The"),
# with it 0.78 (200 CLIMATE-FEVER pairs; tests/test_models.py measures it).
ANSWER_PREFIX = "Answer:"
# Training completions: the variant pair the bundled model itself prefers after ANSWER_PREFIX
# (mean p: " No" 0.46, " Yes" 0.20; "no" 0.00, "yes" 0.00), so training sharpens its own answer.
ANSWERS = (" Yes", " No")
POINTWISE_INSTRUCTION = "Is the document relevant to the search query? Answer yes or no."
DOCUMENT_INSTRUCTION = "Find a document relevant to this search query:"


def document_text(title: str, text: str) -> str:
    """A document as the model reads it: ``title: text`` (title omitted when empty)."""
    title, text = (title or "").strip(), (text or "").strip()
    return f"{title}: {text}" if title else text


def chat(tokenizer, user: str) -> str:
    """``user`` as one chat turn followed by the assistant header (plain text if no template)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    return f"User: {user}\nAssistant: "


def pointwise_prompt(tokenizer, query: str, document: str) -> str:
    """The full pointwise prompt, ending with ``ANSWER_PREFIX`` where the model answers yes / no."""
    return chat(tokenizer, f"{POINTWISE_INSTRUCTION}\n\nSearch query: {query}\n\nDocument: {document}") + ANSWER_PREFIX


def pointwise_prompts(tokenizer, queries: Sequence[str], documents: Sequence[str]) -> list[str]:
    """``pointwise_prompt`` of each (query, document) pair.

    The chat template is rendered once, with marks where query and document go, and filled
    by concatenation (a jinja render per pair costs about as much as its tokenization); only
    when a probe shows the template copies its content verbatim (leading and trailing
    whitespace kept: Llama 3's template trims it), else pair by pair.
    """
    query_mark, document_mark = "\x00query\x00", "\x00document\x00"
    head, found_query, rest = pointwise_prompt(tokenizer, query_mark, document_mark).partition(query_mark)
    middle, found_document, tail = rest.partition(document_mark)
    fill = lambda query, document: head + query + middle + document + tail  # noqa: E731
    probe = (" a query \n", "\n a document  ")
    if not (found_query and found_document) or query_mark in tail or document_mark in tail or fill(*probe) != pointwise_prompt(tokenizer, *probe):
        return [pointwise_prompt(tokenizer, query, document) for query, document in zip(queries, documents)]
    return [fill(query, document) for query, document in zip(queries, documents)]


def answer_variants(word: str) -> list[str]:
    """``word`` in lower, Title and UPPER case, each bare and with a leading space (distinct strings)."""
    return list(dict.fromkeys(space + case for case in (word.lower(), word.capitalize(), word.upper()) for space in ("", " ")))


def answer_tokens(tokenizer) -> tuple[dict[str, int], dict[str, int]]:
    """The variants of yes and of no (``ANSWER_WORDS``) the model can answer with: ({variant: token id}, ...).

    A variant counts when ``pointwise_prompt + variant`` tokenizes as the prompt's own tokens
    plus exactly one token: its probability at the answer position is then the probability
    of that answer. Multi-token variants are left out, because their first token is a word
    fragment ("Y" of "YES" also starts "You") or a bare space, whose probability is not an
    answer; so are variants that merge with the prompt's last token. Ids of both words are
    dropped from both. Either dict may be empty (the caller decides whether that is an error).
    """
    prompt = pointwise_prompt(tokenizer, "query", "document")
    prompt_ids = tokenizer(prompt)["input_ids"]
    found = []
    for word in ANSWER_WORDS:
        variants = {}
        for variant in answer_variants(word):
            full = tokenizer(prompt + variant)["input_ids"]
            if len(full) == len(prompt_ids) + 1 and full[:-1] == prompt_ids:
                variants[variant] = full[-1]
        found.append(variants)
    shared = set(found[0].values()) & set(found[1].values())
    yes, no = ({v: i for v, i in variants.items() if i not in shared} for variants in found)
    return yes, no


def pointwise_completions(tokenizer) -> tuple[str, str]:
    """The answers pointwise examples are trained on: (relevant, not relevant).

    ``ANSWERS`` when each is one token after the prompt, else the first variant of the word
    that is: the scorer reads only one-token answers, and a two-token answer (" " then "Yes")
    would teach the answer position a space, the same for both labels.
    """
    chosen = []
    for preferred, word, variants in zip(ANSWERS, ANSWER_WORDS, answer_tokens(tokenizer)):
        if not variants:
            raise ValueError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r}: no variant of {word!r} "
                f"({answer_variants(word)}) is one token after the pointwise prompt, so the yes/no methods cannot "
                "be trained or scored. Fix: use a base model whose tokenizer has a single token for one of them"
            )
        chosen.append(preferred if preferred in variants else next(iter(variants)))
    return chosen[0], chosen[1]


def document_prompt(tokenizer, query: str) -> str:
    """The prompt of a document preference: the query as the user's request."""
    return chat(tokenizer, f"{DOCUMENT_INSTRUCTION} {query}")


def corpus_texts(corpus, doc_ids) -> list[str]:
    """``document_text`` of each id in ``doc_ids``, looked up in a corpus table (doc_id, title, text)."""
    docs = corpus.set_index("doc_id")
    return [document_text(t, x) for t, x in zip(docs.title.reindex(doc_ids), docs.text.reindex(doc_ids))]


# Query likelihood (qlm, qlm_sft): no chat template; the query follows the filled template after one space.
DOCUMENT_FIELD = "{document}"
DEFAULT_QLM_TEMPLATE = "Passage: {document}\nA claim about this passage:"


def check_template(template: str) -> None:
    """Fail unless ``template`` holds ``{document}`` once, followed by text before the query.

    The text after the document separates it from the query, so the query's tokens do not
    depend on how the document ends (or is cut).
    """
    if template.count(DOCUMENT_FIELD) != 1:
        raise ValueError(f"qlm template {template!r}: write {DOCUMENT_FIELD} exactly once (where the document goes)")
    if not template.split(DOCUMENT_FIELD)[1].strip():
        raise ValueError(
            f"qlm template {template!r}: the query would follow the document directly; "
            "end the template with text after {document}, e.g. '\\nA claim about this passage:'"
        )


def qlm_prompt(template: str, document: str) -> str:
    """``template`` with ``document`` put in: the text the query follows (after one space)."""
    return template.replace(DOCUMENT_FIELD, document)
