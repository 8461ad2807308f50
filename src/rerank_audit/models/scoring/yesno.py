"""The yes/no scoring family (``zeroshot``, ``sft``, ``dpo``): the log-odds of the answer yes.

Score = logsumexp of the logits of every one-token case/space variant of yes minus the same
for no (:func:`answer_token_sets`), read at the position after ``prompts.pointwise_prompt``
(which ends with its ``Answer:`` cue). For ``dpo`` the same log-odds relative to the
reference model: β·(log-odds_π − log-odds_ref), DPO's implicit reward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...text import prompts
from ...methods import method as method_spec
from ..settings import ScoringSettings
from .engine import (
    DEFAULT_BETA,
    Head,
    ScoredSequence,
    backbone_of,
    check_logits_path,
    check_pairs,
    check_reference,
    encode_pairs,
    load_merged_causal_lm,
    load_policy_and_reference,
    policy_minus_reference,
    sum_head_over_positions,
    supports_prefix_reuse,
    unwrap,
)



def answer_token_sets(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of the one-token variants of yes and of no (``prompts.answer_tokens``); each non-empty, disjoint."""
    prompts.pointwise_completions(tokenizer)  # raises the clear error when a word has no one-token variant
    yes, no = (list(dict.fromkeys(variants.values())) for variants in prompts.answer_tokens(tokenizer))
    return yes, no


def _answer_log_odds_head(model, yes_ids: list[int], no_ids: list[int]) -> Head:
    """Head: logsumexp(logits of ``yes_ids``) − logsumexp(logits of ``no_ids``) per position.

    The logits of the answer ids are computed in float32 from the final hidden state (bf16
    models do not round scores into ties), with the model's final-logit softcapping.
    """
    inner = unwrap(model)
    lm_head = inner.get_output_embeddings()
    if hasattr(lm_head, "base_layer"):  # its answer rows below would miss the adapter
        raise NotImplementedError("the yes/no scorers cannot read an adapter on the output layer; train without lm_head in target_modules")
    rows = torch.tensor(yes_ids + no_ids, device=lm_head.weight.device)
    weight = lm_head.weight.detach()[rows].float()
    bias = lm_head.bias.detach()[rows].float() if getattr(lm_head, "bias", None) is not None else None
    softcap = getattr(inner.config.get_text_config(), "final_logit_softcapping", None)
    n_yes = len(yes_ids)

    def log_odds(hidden: torch.Tensor, _following: torch.Tensor) -> torch.Tensor:
        logits = F.linear(hidden.float(), weight, bias)
        if softcap:
            logits = softcap * torch.tanh(logits / softcap)
        return torch.logsumexp(logits[:, :n_yes], dim=-1) - torch.logsumexp(logits[:, n_yes:], dim=-1)

    return log_odds


def _log_odds_at_end(model, head: Head, prompt_ids: list[list[int]], *, settings: ScoringSettings, prefix_reuse: bool,
                     pad_id: int, desc: str) -> np.ndarray:
    """``head`` read at the last position of each prompt (ids), float64 [len(prompt_ids)]; shared prefixes run once with
    ``prefix_reuse``."""
    sequences = [ScoredSequence(ids, len(ids) - 1, len(ids)) for ids in prompt_ids]
    return sum_head_over_positions(
        backbone_of(model), sequences, head, settings=settings, prefix_reuse=prefix_reuse, pad_id=pad_id, desc=desc
    )


def answer_log_odds(model, tokenizer, texts: Sequence[str], *, settings: ScoringSettings, desc: str = "yes/no log-odds") -> np.ndarray:
    """The log-odds of yes after each prompt of ``texts``, as :class:`YesNoScorer` reads it; float64 [len(texts)].

    Each text must end where the model answers yes / no, as ``prompts.pointwise_prompt`` does
    (the assistant header, then ``prompts.ANSWER_PREFIX``): the answer ids are those one-token
    variants (:func:`answer_token_sets`). ``model``: a causal LM; texts that share a prefix share its
    computation. Texts are tokenized whole (no truncation: ``settings.max_length`` is not applied).
    """
    if len(texts) == 0:
        return np.zeros(0, dtype=np.float64)
    yes_ids, no_ids = answer_token_sets(tokenizer)
    prompt_ids = tokenizer(list(texts))["input_ids"]
    backbone = backbone_of(model)
    check_logits_path(model, backbone, prompt_ids[0])
    return _log_odds_at_end(
        model, _answer_log_odds_head(model, yes_ids, no_ids), prompt_ids, settings=settings,
        prefix_reuse=settings.prefix_reuse and supports_prefix_reuse(backbone), pad_id=tokenizer.pad_token_id, desc=desc,
    )


class YesNoScorer:
    """Score = the log-odds of yes after ``prompts.pointwise_prompt(query, document)``.

    Log-odds = logsumexp(logits of the yes ids) − logsumexp(logits of the no ids) at the
    answer position (:func:`answer_token_sets`: every one-token case/space variant), in
    float32. ``model`` is a causal LM (a PEFT model is scored with its adapter active).

    With ``beta`` (the ``dpo`` method) the score is relative to the reference model, as DPO
    shapes it: β·(log-odds under ``model`` − log-odds under ``reference``); ``reference``
    ``None`` means ``model`` (a PEFT model) with its adapter disabled.
    """

    def __init__(self, model, tokenizer, *, reference=None, beta: float | None = None, settings: ScoringSettings = ScoringSettings()):
        if beta is not None:
            check_reference(model, reference)
        self.model, self.reference, self.beta, self.tokenizer = model, reference, beta, tokenizer
        self.settings = settings
        self.yes_ids, self.no_ids = answer_token_sets(tokenizer)
        self.prefix_reuse = settings.prefix_reuse and supports_prefix_reuse(backbone_of(model))
        self._heads = {id(m): _answer_log_odds_head(m, self.yes_ids, self.no_ids) for m in (model, reference) if m is not None}
        check_logits_path(model, backbone_of(model), self.prompt_ids(["query"], ["document"])[0])

    def prompt_ids(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """The token ids each pair is scored on (document truncated to fit ``max_length``)."""
        check_pairs(queries, documents)
        renders = [lambda d, q=q: prompts.pointwise_prompt(self.tokenizer, q, d) for q in queries]
        texts = prompts.pointwise_prompts(self.tokenizer, queries, documents)
        return encode_pairs(self.tokenizer, texts, renders, documents, self.settings.max_length)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Log-odds of yes per pair (β·policy−reference difference with ``beta``), float64 [len(queries)]."""
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float64)
        prompt_ids = self.prompt_ids(queries, documents)

        def log_odds(model) -> np.ndarray:
            # the adapter-disabled reference reads the policy's (un-adapted) output rows
            return _log_odds_at_end(
                model, self._heads[id(model)], prompt_ids, settings=self.settings, prefix_reuse=self.prefix_reuse,
                pad_id=self.tokenizer.pad_token_id, desc="yes/no reference scores" if model is self.reference else "yes/no scores",
            )

        if self.beta is None:
            return log_odds(self.model)
        return self.beta * policy_minus_reference(self.model, self.reference, log_odds)


def from_folder(method: str, model_dir: Path, base_model, tokenizer, *, device, dtype, beta: float | None, template: str | None, settings: ScoringSettings):
    """The yes/no scorer of ``method`` for ``model_dir`` (see :func:`rerank_audit.models.scoring.load_scorer`).

    ``dpo``: the adapter (not merged) over its disabled self, or the full fine-tune over
    ``base_model``, at ``beta`` (``None``: ``DEFAULT_BETA``); the others: the merged model.
    ``template`` is not used.
    """
    if method_spec(method).scored_against_reference:
        policy, reference = load_policy_and_reference(method, model_dir, base_model, device, dtype, settings.attn_implementation)
        return from_model(method, policy, tokenizer, reference=reference, beta=beta, template=template, settings=settings)
    return from_model(method, load_merged_causal_lm(model_dir, base_model, device, dtype, settings.attn_implementation), tokenizer, reference=None, beta=beta,
                      template=template, settings=settings)


def from_model(method: str, model, tokenizer, *, reference, beta: float | None, template: str | None, settings: ScoringSettings):
    """The yes/no scorer of ``method`` for a model in memory: ``dpo`` over ``reference`` (``None``: the PEFT
    model with its adapter disabled) at ``beta`` (``None``: ``DEFAULT_BETA``); the others the model's own
    log-odds (a PEFT model with its adapter active). ``template`` is not used."""
    if method_spec(method).scored_against_reference:
        return YesNoScorer(model, tokenizer, reference=reference, beta=DEFAULT_BETA if beta is None else beta, settings=settings)
    return YesNoScorer(model, tokenizer, settings=settings)
