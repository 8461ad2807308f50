"""Scoring families: how a trained (or base) model turns (query, document) pairs into relevance scores.

One module per family, each a prompt plus a reduction over the model's outputs, all on the
batched engine of :mod:`.engine` and behind the one ``score_pairs`` interface
(:class:`~rerank_audit.models.scorer.Scorer`):

| family      | module        | methods             | score                                                     |
|-------------|---------------|---------------------|-----------------------------------------------------------|
| yes/no      | ``yesno``     | zeroshot, sft, dpo  | log-odds of yes after the pointwise prompt (dpo: β·(π − ref)) |
| document    | ``document``  | dpo_pairs           | β·mean per document token of (log π − log π_ref)          |
| reward head | ``reward``    | reward              | the Bradley–Terry head at the closing EOS                 |
| query       | ``likelihood``| qlm, qlm_sft        | mean log P(query given the document prompt), no chat template |

A new family is one module with ``METHODS``, its scorer and ``from_folder`` (the scorer of a
method for a model folder), listed in ``FAMILIES``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..loading import load_tokenizer, pick_device, resolve_dtype
from . import document, likelihood, reward, yesno
from .document import ImplicitRewardScorer
from .engine import DEFAULT_BATCH_SIZE, DEFAULT_BETA, DEFAULT_MAX_LENGTH, adapter_base, is_adapter_folder
from .likelihood import DEFAULT_QLM_TEMPLATE, QueryLikelihoodScorer, check_template
from .reward import RewardHeadScorer
from .yesno import YesNoScorer, answer_token_sets

FAMILIES = (yesno, document, reward, likelihood)
FAMILY_OF = {method: family for family in FAMILIES for method in family.METHODS}
METHODS = tuple(FAMILY_OF)
# Scored with the base model as it is: no training, budget "0" (schemas.UNTRAINED_BUDGET).
UNTRAINED_METHODS = ("zeroshot", "qlm")
# The untrained model each trained method is compared with ("did training help?"): the base
# model scored by the same family (qlm for qlm_sft); zero-shot yes/no for the families whose
# untrained form ranks nothing (dpo_pairs' implicit reward is 0 everywhere; reward's head is new).
UNTRAINED_REFERENCE = {"sft": "zeroshot", "dpo": "zeroshot", "dpo_pairs": "zeroshot", "reward": "zeroshot", "qlm_sft": "qlm"}

__all__ = [
    "DEFAULT_BATCH_SIZE", "DEFAULT_BETA", "DEFAULT_MAX_LENGTH", "DEFAULT_QLM_TEMPLATE", "FAMILY_OF", "METHODS",
    "UNTRAINED_METHODS", "UNTRAINED_REFERENCE", "ImplicitRewardScorer", "QueryLikelihoodScorer", "RewardHeadScorer", "YesNoScorer",
    "answer_token_sets", "check_template", "is_adapter_folder", "load_scorer",
]  # fmt: skip


def load_scorer(
    method: str,
    model_dir: str | Path,
    base_model: str | Path | None = None,
    *,
    beta: float | None = None,
    template: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    prefix_reuse: bool = True,
    progress: bool | None = None,
):
    """The scorer of ``method`` for the model in ``model_dir``.

    ``model_dir`` is a full model folder or a PEFT adapter folder (``adapter_config.json``);
    ``base_model`` is the folder or hub id the adapter was trained on, and for ``dpo`` and
    ``dpo_pairs`` with a full fine-tune also the reference model (default: the adapter's
    recorded base). For the untrained methods (``UNTRAINED_METHODS``) pass the base model
    folder as ``model_dir``. ``beta``: the DPO β of ``dpo`` and ``dpo_pairs`` (their train
    ``beta``; ``None``: ``DEFAULT_BETA``, TRL's default). ``template``: the query-likelihood
    prompt of ``qlm`` and ``qlm_sft`` (``None``: ``DEFAULT_QLM_TEMPLATE``). A method ignores
    the settings of other families. ``dtype``: ``None``/``"auto"``
    (:func:`~rerank_audit.models.loading.resolve_dtype` picks it) or a dtype name.
    Adapters are merged into their base, except for ``dpo`` and ``dpo_pairs``, whose
    reference is the base with the adapter disabled.
    """
    if method not in FAMILY_OF:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    device = torch.device(device) if device is not None else pick_device()
    dtype = resolve_dtype(dtype, device)
    model_dir = Path(model_dir)
    if is_adapter_folder(model_dir) and base_model is None:
        base_model = adapter_base(model_dir)
    tokenizer = load_tokenizer(model_dir if (model_dir / "tokenizer_config.json").is_file() else base_model)
    options = dict(batch_size=batch_size, max_length=max_length, prefix_reuse=prefix_reuse, progress=progress)
    return FAMILY_OF[method].from_folder(
        method, model_dir, base_model, tokenizer, device=device, dtype=dtype, beta=beta, template=template, options=options
    )
