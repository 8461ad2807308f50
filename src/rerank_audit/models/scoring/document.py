"""The document-likelihood scoring family (``dpo_pairs``): DPO's implicit reward of the document.

Score = β·mean over the document's tokens of (log π − log π_ref), the document (+ EOS) being
the completion of ``prompts.document_prompt(query)``, as DPOTrainer trained it. The
reference is a separate base model, or the policy itself with its LoRA adapter disabled.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from ...text import prompts
from ..settings import ScoringSettings
from .engine import (
    DEFAULT_BETA,
    ScoredSequence,
    backbone_of,
    check_logits_path,
    check_pairs,
    check_reference,
    common_prefix_length,
    encode_pairs,
    load_policy_and_reference,
    policy_minus_reference,
    sum_head_over_positions,
    supports_prefix_reuse,
    token_log_probs,
)



class ImplicitRewardScorer:
    """Score = β·mean over the document's tokens of (log π(t|…) − log π_ref(t|…)).

    The DPO implicit reward per completion token. TRL's DPO loss sums over the tokens; the
    mean keeps a document's length (and a deletion metric's removed words) from moving the
    score by itself. The sequence is tokenized as TRL's DPOTrainer does:
    ``document_prompt(query) + document + eos``, the completion (document + eos) starting
    where its tokens leave the prompt's. ``policy`` is the trained causal LM; ``reference``
    the base model, or ``None`` when ``policy`` is a PEFT model whose reference is itself
    with the adapter disabled (no second copy in memory).
    """

    def __init__(self, policy, tokenizer, *, reference=None, beta: float = DEFAULT_BETA, settings: ScoringSettings = ScoringSettings()):
        check_reference(policy, reference)
        self.policy, self.reference, self.tokenizer = policy, reference, tokenizer
        self.beta, self.settings = beta, settings
        self.prefix_reuse = settings.prefix_reuse and supports_prefix_reuse(backbone_of(policy))
        probe = self._sequences(["query"], ["document"])[0].ids
        check_logits_path(policy, backbone_of(policy), probe)

    def _sequences(self, queries: Sequence[str], documents: Sequence[str]) -> list[ScoredSequence]:
        check_pairs(queries, documents)
        eos = self.tokenizer.eos_token or ""
        prompt_of = {q: prompts.document_prompt(self.tokenizer, q) for q in dict.fromkeys(queries)}
        prompt_ids = {q: self.tokenizer(p)["input_ids"] for q, p in prompt_of.items()}
        renders = [lambda d, p=prompt_of[q]: p + d + eos for q in queries]
        texts = [render(d) for render, d in zip(renders, documents)]
        encoded = encode_pairs(self.tokenizer, texts, renders, documents, self.settings.max_length)
        sequences = []
        for q, ids in zip(queries, encoded):
            start = common_prefix_length([prompt_ids[q], ids])  # first completion token
            sequences.append(ScoredSequence(ids, max(start - 1, 0), len(ids) - 1))
        return sequences

    def prompt_ids(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """The token ids each pair is scored on (document truncated to fit ``max_length``)."""
        return [s.ids for s in self._sequences(queries, documents)]

    def _mean_log_probs(self, model, sequences: list[ScoredSequence]) -> np.ndarray:
        """log π(t|…) of ``model`` averaged over each sequence's completion tokens, float64."""
        sums = sum_head_over_positions(
            backbone_of(model), sequences, partial(token_log_probs, model), settings=self.settings,
            prefix_reuse=self.prefix_reuse, pad_id=self.tokenizer.pad_token_id,
            desc="reference log-probs" if model is self.reference else "log-probs",
        )
        return sums / np.array([s.stop - s.first for s in sequences], dtype=np.float64)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """β·mean per-token (log π − log π_ref) per pair, float64 [len(queries)]."""
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float64)
        sequences = self._sequences(queries, documents)
        return self.beta * policy_minus_reference(
            self.policy, self.reference, lambda model: self._mean_log_probs(model, sequences)
        )


def from_folder(method: str, model_dir: Path, base_model, tokenizer, *, device, dtype, beta: float | None, template: str | None, settings: ScoringSettings):
    """The implicit-reward scorer of ``method`` for ``model_dir``: the adapter over its disabled self,
    or the full fine-tune over ``base_model``, at ``beta`` (``None``: ``DEFAULT_BETA``). ``template`` is not used."""
    policy, reference = load_policy_and_reference(method, model_dir, base_model, device, dtype, settings.attn_implementation)
    return from_model(method, policy, tokenizer, reference=reference, beta=beta, template=template, settings=settings)


def from_model(method: str, model, tokenizer, *, reference, beta: float | None, template: str | None, settings: ScoringSettings):
    """The implicit-reward scorer of a policy in memory over ``reference`` (``None``: the PEFT policy with
    its adapter disabled), at ``beta`` (``None``: ``DEFAULT_BETA``). ``template`` is not used."""
    return ImplicitRewardScorer(model, tokenizer, reference=reference, beta=DEFAULT_BETA if beta is None else beta, settings=settings)
