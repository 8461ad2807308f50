"""The query-likelihood scoring family (``qlm``, ``qlm_sft``, ``qlm_lce``): how likely the model finds the query after the document.

Score = mean log P(query token | everything before it) over the query's tokens, the text
being ``template`` with the document put in, then a space and the query; no chat template
(Sachan et al. 2022, UPR; Zhuang et al. 2023, llm-qlm). The template says what the query
is to the model: a claim, a question, a search query; it is configured per dataset.

The scorer runs on the batched engine (:mod:`.engine`): pairs in
length-sorted batches, the float32 log-probabilities computed from the final hidden states
only at the query's positions. The document comes first here, so the prefix shared between
pairs is the document's prompt (a document scored for many queries, as when explanations mask
query words, runs its prompt once), or the first words that masked variants of it keep.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from ...text.prompts import DEFAULT_QLM_TEMPLATE, check_template, qlm_prompt
from ..settings import ScoringSettings
from .engine import (
    ScoredSequence,
    backbone_of,
    check_logits_path,
    check_pairs,
    common_prefix_length,
    encode_pairs,
    load_merged_causal_lm,
    sum_head_over_positions,
    supports_prefix_reuse,
    token_log_probs,
)

def _appended_special_tokens(tokenizer) -> int:
    """How many special tokens (e.g. an EOS) the tokenizer appends after a text's own tokens."""
    bare = tokenizer("claim", add_special_tokens=False)["input_ids"]
    full = tokenizer("claim")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return len(full) - start - len(bare)
    raise ValueError(f"{type(tokenizer).__name__}: cannot find a text's tokens among its special tokens")


class QueryLikelihoodScorer:
    """Score = mean log P(query | ``template`` with the document), float64, ≤ 0; higher is more relevant.

    ``model`` is a causal LM (a PEFT model is scored with its adapter active); ``template``
    holds ``{document}`` (the ``prompts.document_text`` a scorer receives) and ends with the
    text that introduces the query, which follows after one space. Too-long pairs lose the
    end of their document, never the query. An empty query has no tokens: score 0.0 (the
    log-probability of the empty sequence), which explanations reach by masking every
    query word.
    """

    def __init__(self, model, tokenizer, *, template: str = DEFAULT_QLM_TEMPLATE, settings: ScoringSettings = ScoringSettings()):
        check_template(template)
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.settings = settings
        self._backbone = backbone_of(model)
        self.prefix_reuse = settings.prefix_reuse and supports_prefix_reuse(self._backbone)
        self._appended = _appended_special_tokens(tokenizer)
        check_logits_path(model, self._backbone, self.prompt_ids(["query"], ["document"])[0])

    def _prompt(self, document: str) -> str:
        return qlm_prompt(self.template, document)

    def _text(self, document: str, query: str) -> str:
        return self._prompt(document) + " " + query if query else self._prompt(document)

    def _query_ids(self, queries: Sequence[str]) -> dict[str, list[int]]:
        """Each distinct query's token ids as they follow the template's closing text.

        Found where the ids of prompt + " " + query leave the prompt's (so a BOS, or a
        token the query merges into, is handled); appended special tokens are not the query's.
        """
        distinct = list(dict.fromkeys(queries))
        prompt = self.tokenizer(self._prompt(""))["input_ids"]
        full = self.tokenizer([self._text("", q) for q in distinct])["input_ids"]
        return {q: ids[common_prefix_length([prompt, ids]) : len(ids) - self._appended] for q, ids in zip(distinct, full)}

    def scored_sequences(self, queries: Sequence[str], documents: Sequence[str]) -> list[ScoredSequence]:
        """Each pair's ids; the head reads positions ``first .. stop-1``, which predict the query's tokens.

        Public: ``training.lce`` trains on exactly these tokens (the template, the cut of a too-long document).
        """
        check_pairs(queries, documents)
        query_ids = self._query_ids(queries)
        renders = [lambda d, q=q: self._text(d, q) for q in queries]
        texts = [render(d) for render, d in zip(renders, documents)]
        sequences = []
        for q, ids in zip(queries, encode_pairs(self.tokenizer, texts, renders, documents, self.settings.max_length)):
            end = len(ids) - self._appended
            start = end - len(query_ids[q])
            if ids[start:end] != query_ids[q]:
                raise ValueError(f"qlm template {self.template!r}: the tokens of query {q!r} change with the document before it")
            if query_ids[q] and start < 1:
                raise ValueError(f"qlm template {self.template!r}: nothing precedes the query's first token to predict it from")
            sequences.append(ScoredSequence(ids, start - 1, end - 1))
        return sequences

    def prompt_ids(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """The token ids each pair is scored on (document truncated to fit ``max_length``)."""
        return [s.ids for s in self.scored_sequences(queries, documents)]

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Mean log-probability of each query's tokens, float64 [len(queries)]."""
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float64)
        sequences = self.scored_sequences(queries, documents)
        scores = np.zeros(len(sequences), dtype=np.float64)
        scored = [i for i, s in enumerate(sequences) if s.stop > s.first]  # empty queries keep 0.0
        if not scored:
            return scores
        sums = sum_head_over_positions(
            self._backbone, [sequences[i] for i in scored], partial(token_log_probs, self.model),
            settings=self.settings, prefix_reuse=self.prefix_reuse, pad_id=self.tokenizer.pad_token_id,
            desc="query log-probs",
        )
        scores[scored] = sums / np.array([sequences[i].stop - sequences[i].first for i in scored])
        return scores



def from_folder(method: str, model_dir: Path, base_model, tokenizer, *, device, dtype, beta: float | None, template: str | None, settings: ScoringSettings):
    """The query-likelihood scorer for ``model_dir``: the base model (``qlm``) or a trained one
    (``qlm_sft``, ``qlm_lce``; an adapter is merged), reading ``template`` (``None``: ``DEFAULT_QLM_TEMPLATE``).
    ``beta`` is not used."""
    model = load_merged_causal_lm(model_dir, base_model, device, dtype, settings.attn_implementation)
    return from_model(method, model, tokenizer, reference=None, beta=beta, template=template, settings=settings)


def from_model(method: str, model, tokenizer, *, reference, beta: float | None, template: str | None, settings: ScoringSettings):
    """The query-likelihood scorer of a model in memory (a PEFT model scores with its adapter active);
    ``reference`` and ``beta`` are not used."""
    return QueryLikelihoodScorer(model, tokenizer, template=DEFAULT_QLM_TEMPLATE if template is None else template, settings=settings)
