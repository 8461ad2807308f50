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


def _chat(tokenizer, user: str) -> str:
    """``user`` as one chat turn followed by the assistant header (plain text if no template)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    return f"User: {user}\nAssistant: "


def pointwise_prompt(tokenizer, query: str, document: str) -> str:
    """The full pointwise prompt, ending with ``ANSWER_PREFIX`` where the model answers yes / no."""
    return _chat(tokenizer, f"{POINTWISE_INSTRUCTION}\n\nSearch query: {query}\n\nDocument: {document}") + ANSWER_PREFIX


def pointwise_completion(relevant: bool) -> str:
    """The answer a pointwise example is trained on: ``ANSWERS[0]`` if relevant, else ``ANSWERS[1]``."""
    return ANSWERS[0] if relevant else ANSWERS[1]


def document_prompt(tokenizer, query: str) -> str:
    """The prompt of a document preference: the query as the user's request."""
    return _chat(tokenizer, f"{DOCUMENT_INSTRUCTION} {query}")


def corpus_texts(corpus, doc_ids) -> list[str]:
    """``document_text`` of each id in ``doc_ids``, looked up in a corpus table (doc_id, title, text)."""
    docs = corpus.set_index("doc_id")
    return [document_text(t, x) for t, x in zip(docs.title.reindex(doc_ids), docs.text.reindex(doc_ids))]
