"""Written rationales of a ranking decision, and the checks run on them.

A general-purpose instruction LLM (the *generator*, not the re-ranker) reads the query, the
document and the top-K keywords with their signed SHAP attributions, and writes 2-4
sentences on why the document is or is not relevant. The explained documents come from both
ends of the method's re-ranked head (``selection``), so about half of them are ones the method
decided against. By default (``show_decision=False``) the prompt states neither the method's
decision nor the rank: verdict agreement then measures whether the attribution evidence alone
leads the writer to the method's decision. ``show_decision=True`` is the older protocol: the
prompt gives the rank among the head's documents, from which the decision follows. The score
is never given (a method-specific scale the generator cannot read).

Checks (all words compared by ``words.word_key``: lowercased, punctuation-stripped, stemmed):
- keyword coverage: share of the distinct keywords the rationale mentions;
- verdict agreement: the rationale's verdict (``rationale_verdict``) equals the model's
  decision (``model_decisions``); a rationale that states no verdict does not agree;
- the verdict as a probability (``verdict_log_odds``): the writer's log-odds of "relevant"
  after its own rationale, and when asked about the query and the document alone, which
  ``evaluation.verdict`` turns into AUCs against the method's decision;
- unsupported-word rate: share of the rationale's content words (stop words and the task's
  own vocabulary such as "document" or "relevant" left out) found in neither the query nor
  the document.
"""

from __future__ import annotations

import logging
import re
from typing import Mapping, Sequence

import pandas as pd
from tqdm.auto import tqdm

from rerank_audit.data.schemas import VERDICT_COLUMNS
from rerank_audit.models.batching import Batching, generation_batching
from rerank_audit.text import prompts
from rerank_audit.text.words import is_content_word, split_words, word_key

log = logging.getLogger(__name__)

# Asked after the rationale, in the writer's own turn, to read its verdict as a probability: the
# answer follows "Answer:" as in the yes/no scorers (prompts.ANSWER_PREFIX), so their answer token
# ids apply. In the writer's turn, not as a new user turn: with hand-written rationales that say
# "relevant" or "not relevant", SmolLM2-135M-Instruct's log-odds moved by +0.5 to +0.9 between the
# two here, by +0.02 to +0.15 after a user turn asking the same (12 CLIMATE-FEVER pairs): a new
# turn reads the question afresh rather than the writer's own conclusion.
VERDICT_QUESTION = "Is the document relevant to the search query?"

RATIONALE_INSTRUCTION = (
    "In 2 to 4 sentences, explain why the document is or is not relevant to the search query. "
    "Mention the influential words listed above."
)

# Verdict rule: the first sentence with a relevance cue decides. A negative cue, or a
# negation among the NEGATION_WINDOW words before a positive cue, means "not relevant".
POSITIVE_CUES = frozenset({"relevant", "relevance", "relevancy", "related", "pertinent"})
NEGATIVE_CUES = frozenset({"irrelevant", "unrelated", "irrelevance"})
NEGATIONS = frozenset({"not", "no", "never", "neither", "nor", "cannot", "hardly", "barely", "lacks", "without", "nothing"})
NEGATION_WINDOW = 3

# Words a rationale uses to talk about the task itself; they need no support in the texts.
TASK_WORDS = frozenset(
    """document documents query queries search relevant relevance irrelevant related unrelated pertinent
    mention mentions mentioned mentioning discuss discusses topic keyword keywords word words term terms
    information however therefore thus specifically directly""".split()
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_VERDICT_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")


def rationale_request(item: Mapping, show_decision: bool = False) -> str:
    """The user turn that asks the generator for a rationale of one item (query, document, keywords, attributions).

    With ``show_decision`` it also gives the item's rank among the ``head_size`` documents the
    search engine re-ranked (the method's decision: upper half relevant).
    """
    influential = "\n".join(f"- {word}: {value:+.3g}" for word, value in zip(item["keywords"], item["attributions"]))
    ranked = (
        f"A search engine ranked this document at position {int(item['rank'])} of the {int(item['head_size'])} "
        "documents it ranked for the query. "
        if show_decision
        else ""
    )
    return (
        f"Search query: {item['query']}\n\nDocument: {item['document']}\n\n{ranked}"
        "The words that most influenced the search engine's relevance score (positive values pushed the document up, "
        f"negative values pushed it down):\n{influential}\n\n{RATIONALE_INSTRUCTION}"
    )


def rationale_prompt(tokenizer, item: Mapping, show_decision: bool = False) -> str:
    """The generator's chat prompt for one item: ``rationale_request`` as the user turn, then the assistant header."""
    return prompts.chat(tokenizer, rationale_request(item, show_decision))


def verdict_prompt(tokenizer, item: Mapping, rationale: str, show_decision: bool = False) -> str:
    """The writer's turn continued to a yes/no answer: ``rationale_prompt``, the ``rationale``, then
    ``VERDICT_QUESTION`` and ``prompts.ANSWER_PREFIX``."""
    return f"{rationale_prompt(tokenizer, item, show_decision)}{rationale}\n\n{VERDICT_QUESTION} {prompts.ANSWER_PREFIX}"


def verdict_log_odds(model, tokenizer, items: Sequence[Mapping], rationales: Sequence[str], *, settings, show_decision: bool = False) -> pd.DataFrame:
    """The writer's log-odds of "relevant" (yes) against "not relevant" (no), read from its answer tokens.

    ``items`` as for ``write_rationales``, ``rationales`` the writer's texts in that order,
    ``settings`` a ``ScoringSettings`` (batching; ``max_length`` is not applied). Returns, in
    ``items`` order, float64 columns ``verdict_log_odds`` (after ``verdict_prompt``: the writer
    has seen the keywords, their attributions, the rank with ``show_decision``, and its own
    rationale) and ``verdict_log_odds_input_only`` (after ``prompts.pointwise_prompt``: the same
    question about the query and the document alone, the baseline of leakage-adjusted
    simulatability). Each is one forward pass per prompt, no generation
    (``scoring.yesno.answer_log_odds``: logsumexp over the yes variants minus over the no variants).
    """
    from rerank_audit.models.scoring.yesno import answer_log_odds

    with_explanation = [verdict_prompt(tokenizer, item, r, show_decision) for item, r in zip(items, rationales, strict=True)]
    input_only = [prompts.pointwise_prompt(tokenizer, item["query"], item["document"]) for item in items]
    return pd.DataFrame(
        {name: answer_log_odds(model, tokenizer, texts, settings=settings, desc=name) for name, texts in zip(VERDICT_COLUMNS, (with_explanation, input_only))}
    )


def write_rationales(
    generator_model, tokenizer, items: Sequence[Mapping], max_new_tokens: int, batch_size: int | None = None, show_decision: bool = False,
    memory_mb: int | None = None,
) -> list[str]:
    """One rationale per item, greedy decoding, in ``items`` order.

    ``items``: mappings with query, document, keywords (list of words) and attributions
    (their signed values, same order), and rank and head_size when ``show_decision`` (see
    ``rationale_prompt``). Prompts are generated longest first, left-padded so every prompt
    ends where generation starts, ``batch_size`` at a time; None: as many as the job's memory
    holds with their ``max_new_tokens`` (``batching.generation_batching``; ``memory_mb``: the
    job's). Returns the generated text, special tokens removed, stripped.
    """
    import torch

    prompts = [rationale_prompt(tokenizer, item, show_decision) for item in items]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]  # once: batches are planned by length, then padded
    lengths = [len(ids) for ids in prompt_ids]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    batching = Batching(rows=batch_size) if batch_size is not None else generation_batching(generator_model, memory_mb)
    batches = batching.split([lengths[i] for i in order], extra=max_new_tokens)
    log.info("rationales: %d prompts in %d batches (%s)", len(prompts), len(batches), batching.describe())
    device = next(generator_model.parameters()).device
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    rationales = [""] * len(prompts)
    try:
        for rows in tqdm(batches, desc="rationales", unit="batch"):
            batch = [order[r] for r in rows]
            encoded = tokenizer.pad({"input_ids": [prompt_ids[i] for i in batch]}, return_tensors="pt").to(device)
            with torch.no_grad():
                generated = generator_model.generate(
                    **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_token_id
                )
            texts = tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, text in zip(batch, texts):
                rationales[i] = text.strip()
    finally:
        tokenizer.padding_side = padding_side
    return rationales


def keyword_coverage(rationale: str, keywords: Sequence[str]) -> float:
    """Share of the distinct keywords (by key) that the rationale mentions; NaN without keywords."""
    wanted = {word_key(k) for k in keywords} - {""}
    if not wanted:
        return float("nan")
    mentioned = {word_key(w) for w in split_words(rationale)}
    return len(wanted & mentioned) / len(wanted)


def rationale_verdict(rationale: str) -> bool | None:
    """True if the rationale calls the document relevant, False if not relevant, None if it never says.

    The first sentence holding a relevance cue (relevant, related, pertinent, ...) decides:
    "irrelevant" / "unrelated", or a negation (not, no, never, n't, ...) within the
    ``NEGATION_WINDOW`` words before the cue, reads as not relevant.
    """
    for sentence in _SENTENCE_END.split(rationale.lower()):
        tokens = _VERDICT_TOKEN.findall(sentence)
        for position, token in enumerate(tokens):
            if token in NEGATIVE_CUES:
                return False
            if token in POSITIVE_CUES:
                before = tokens[max(0, position - NEGATION_WINDOW) : position]
                return not any(w in NEGATIONS or w.endswith("n't") for w in before)
    return None


def model_decisions(run: pd.DataFrame) -> pd.Series:
    """The re-ranker's decision for each row of ``run`` (query_id, rank): relevant iff in the top half.

    Pass the method's re-ranked head (``selection.reranked_head``), the documents it actually
    scored: below it a run keeps BM25's order, which is no decision of the method. Top half of
    the query's list: rank <= n / 2 for a list of n candidates (the middle document of an odd
    list counts as not relevant). Ranks rather than a score threshold because a method's
    scores (implicit rewards above all) shift from query to query, while ranks are what the
    method is judged on. Returns a bool Series on run's index.
    """
    list_length = run.groupby("query_id")["rank"].transform("size")
    return (run["rank"] <= list_length / 2).rename("relevant")


def stated_reason_keys(rationale: str, task_words: frozenset[str] = TASK_WORDS) -> list[str]:
    """Keys of the words a rationale gives as reasons, in its order: its content words (not stop
    words, not punctuation) outside the task's own vocabulary ``task_words``."""
    task_keys = {word_key(w) for w in task_words}
    return [key for key in (word_key(w) for w in split_words(rationale) if is_content_word(w)) if key not in task_keys]


def unsupported_word_rate(rationale: str, query: str, document: str, task_words: frozenset[str] = TASK_WORDS) -> float:
    """Share of the rationale's content words found in neither query nor document; NaN if it has none.

    Content words: not stop words, not in ``task_words``, not punctuation.
    """
    content = stated_reason_keys(rationale, task_words)
    if not content:
        return float("nan")
    supported = {word_key(w) for w in split_words(query) + split_words(document)}
    return sum(key not in supported for key in content) / len(content)


def with_rationales(items: pd.DataFrame, rationales: pd.DataFrame, source: str = "rationales") -> pd.DataFrame:
    """``items`` (``selection.rationale_items``) with the ``rationale`` text of each pair from ``rationales`` (RATIONALES rows),
    and the writer's log-odds (``VERDICT_COLUMNS``) where ``rationales`` has them.

    A pair of ``items`` without its rationale is an error naming ``source``: the rationales
    were written for another explained head.
    """
    carried = ["rationale", *[c for c in VERDICT_COLUMNS if c in rationales.columns]]
    merged = items.merge(rationales[["query_id", "doc_id", *carried]], on=["query_id", "doc_id"], how="left", validate="one_to_one")
    missing = merged[merged.rationale.isna()]
    if len(missing):
        first = missing.iloc[0]
        raise ValueError(
            f"{source}: no rationale for {len(missing)} explained pair(s), e.g. ({first.query_id}, {first.doc_id}); "
            "re-run the rationale rule after the explain rule"
        )
    return merged


def rationale_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (query, document, keywords, rationale, relevant) with the rationale checks added.

    Other columns (such as ``end``, the head end a pair was explained from) are kept.

    Adds keyword_coverage, verdict (nullable bool), verdict_agreement (0.0 / 1.0) and
    unsupported_rate (floats in [0, 1], NaN where undefined).
    """
    verdicts = [rationale_verdict(r) for r in frame.rationale]
    return frame.assign(
        keyword_coverage=[keyword_coverage(r, k) for r, k in zip(frame.rationale, frame.keywords)],
        verdict=pd.array(verdicts, dtype="boolean"),
        verdict_agreement=[float(v is not None and v == bool(d)) for v, d in zip(verdicts, frame.relevant)],
        unsupported_rate=[unsupported_word_rate(r, q, d) for r, q, d in zip(frame["rationale"], frame["query"], frame["document"])],
    ).astype({"keyword_coverage": "float64", "verdict_agreement": "float64", "unsupported_rate": "float64"})
