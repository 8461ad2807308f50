"""The reward-head scoring family (``reward``): a Bradley–Terry reward model's scalar.

Score = the scalar head of the sequence classifier that RewardTrainer trained on document
pairs, read at the EOS that closes ``prompts.document_prompt(query) + document``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...text import prompts
from ..loading import load_sequence_classifier
from ..settings import ScoringSettings
from .engine import (
    ScoredSequence,
    backbone_of,
    check_pairs,
    encode_pairs,
    is_adapter_folder,
    sum_head_over_positions,
    supports_prefix_reuse,
    unwrap,
    with_adapter,
)



class RewardHeadScorer:
    """Score = the reward model's scalar for ``document_prompt(query) + document + eos``.

    Read at the appended EOS, the last token of the sequence, whatever the pad token is: the
    reward model is trained with a pad token distinct from EOS, so the classifier read the
    EOS in training too (a pad equal to EOS would make a pad-stripping read land on the
    document's last token instead). Computed in float32 from the final hidden state.
    """

    def __init__(self, model, tokenizer, *, settings: ScoringSettings = ScoringSettings()):
        self.model, self.tokenizer = model, tokenizer
        self.settings = settings
        inner = unwrap(model)
        self._backbone = backbone_of(model)
        self.prefix_reuse = settings.prefix_reuse and supports_prefix_reuse(self._backbone)
        self._head = inner.score if hasattr(inner, "score") else inner.classifier

    def _sequences(self, queries: Sequence[str], documents: Sequence[str]) -> list[ScoredSequence]:
        check_pairs(queries, documents)
        eos = self.tokenizer.eos_token or ""
        prompt_of = {q: prompts.document_prompt(self.tokenizer, q) for q in dict.fromkeys(queries)}
        renders = [lambda d, p=prompt_of[q]: p + d + eos for q in queries]
        texts = [render(d) for render, d in zip(renders, documents)]
        return [ScoredSequence(ids, len(ids) - 1, len(ids)) for ids in encode_pairs(self.tokenizer, texts, renders, documents, self.settings.max_length)]

    def read_positions(self, queries: Sequence[str], documents: Sequence[str]) -> list[int]:
        """Index of the token whose hidden state the head reads (the closing EOS), per pair."""
        return [s.first for s in self._sequences(queries, documents)]

    def prompt_ids(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """The token ids each pair is scored on (document truncated to fit ``max_length``)."""
        return [s.ids for s in self._sequences(queries, documents)]

    def _reward(self, hidden: torch.Tensor, _following: torch.Tensor) -> torch.Tensor:
        head = self._head
        if isinstance(head, torch.nn.Linear):
            bias = head.bias.float() if head.bias is not None else None
            return F.linear(hidden.float(), head.weight.float(), bias)[:, 0]
        return head(hidden)[:, 0].float()

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Reward per pair, float64 [len(queries)]."""
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float64)
        return sum_head_over_positions(
            self._backbone, self._sequences(queries, documents), self._reward,
            settings=self.settings, prefix_reuse=self.prefix_reuse, pad_id=self.tokenizer.pad_token_id,
            desc="rewards",
        )


def _require_trained_head(adapter_dir: Path) -> None:
    """A reward adapter must carry its trained score head, else the base's random head would score."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if not config.get("modules_to_save"):
        raise ValueError(
            f"{adapter_dir / 'adapter_config.json'}: no modules_to_save, so the reward head was not saved. "
            "Fix: train the reward adapter with task_type='SEQ_CLS' (PEFT then saves the score head)"
        )


def from_folder(method: str, model_dir: Path, base_model, tokenizer, *, device, dtype, beta: float | None, template: str | None, settings: ScoringSettings):
    """The reward scorer for ``model_dir``: a full sequence classifier, or an adapter (with its trained
    head) merged into ``base_model`` loaded as one. ``beta`` and ``template`` are not used."""
    if is_adapter_folder(model_dir):
        _require_trained_head(model_dir)
        model = with_adapter(load_sequence_classifier(base_model, device, dtype, settings.attn_implementation), model_dir, device).merge_and_unload()
    else:
        model = load_sequence_classifier(model_dir, device, dtype, settings.attn_implementation)
    return from_model(method, model, tokenizer, reference=None, beta=beta, template=template, settings=settings)


def from_model(method: str, model, tokenizer, *, reference, beta: float | None, template: str | None, settings: ScoringSettings):
    """The reward scorer of a sequence classifier in memory (a PEFT model reads its adapter's head);
    ``reference``, ``beta`` and ``template`` are not used."""
    return RewardHeadScorer(model, tokenizer, settings=settings)
