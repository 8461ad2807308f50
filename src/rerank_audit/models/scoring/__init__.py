"""Scoring families: how a trained (or base) model turns (query, document) pairs into relevance scores.

One module per family, each a prompt plus a reduction over the model's outputs, all on the
batched engine of :mod:`.engine` and behind the one ``score_pairs`` interface
(:class:`~rerank_audit.models.scorer.Scorer`):

| family      | module        | score                                                          |
|-------------|---------------|----------------------------------------------------------------|
| yes/no      | ``yesno``     | log-odds of yes after the pointwise prompt (DPO-trained: β·(π − ref)) |
| document    | ``document``  | β·mean per document token of (log π − log π_ref)               |
| reward head | ``reward``    | the Bradley–Terry head at the closing EOS                      |
| query       | ``likelihood``| mean log P(query given the document prompt), no chat template  |

A method names its family in :mod:`rerank_audit.methods`; a new family is one module here
with its scorer, ``from_folder`` (the scorer of a method for a model folder) and
``from_model`` (for a model in memory, as training's model selection scores it).
"""

from __future__ import annotations

import logging
from importlib import import_module
from pathlib import Path

import torch

from ...methods import method as method_spec
from ..batching import job_holdings, model_config
from ..loading import load_tokenizer, pick_device, resolve_dtype
from ..settings import ScoringSettings
from .document import ImplicitRewardScorer
from .engine import DEFAULT_BETA, adapter_base, is_adapter_folder
from .likelihood import QueryLikelihoodScorer
from .reward import RewardHeadScorer
from .yesno import YesNoScorer, answer_token_sets

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BETA", "ImplicitRewardScorer", "QueryLikelihoodScorer", "RewardHeadScorer", "ScoringSettings", "YesNoScorer",
    "answer_token_sets", "is_adapter_folder", "load_scorer", "model_scorer",
]  # fmt: skip


def load_scorer(
    method: str,
    model_dir: str | Path,
    base_model: str | Path | None = None,
    *,
    settings: ScoringSettings = ScoringSettings(),
    beta: float | None = None,
    template: str | None = None,
):
    """The scorer of ``method`` (a :mod:`rerank_audit.methods` entry) for the model in ``model_dir``.

    ``model_dir`` is a full model folder or a PEFT adapter folder (``adapter_config.json``);
    ``base_model`` is the folder or hub id the adapter was trained on, and for methods scored
    against a reference (DPO-trained) with a full fine-tune also the reference model
    (default: the adapter's recorded base). For the untrained methods pass the base model
    folder as ``model_dir``. ``settings``: batch size, max length, dtype, device, prefix
    reuse, progress (:class:`~rerank_audit.models.settings.ScoringSettings`, built once from
    the config). ``beta``: the DPO β of DPO-trained methods (their train ``beta``; ``None``:
    ``DEFAULT_BETA``, TRL's default). ``template``: the query-likelihood prompt
    (``None``: ``DEFAULT_QLM_TEMPLATE``). A family ignores the arguments it has no use for.
    Adapters are merged into their base, except for DPO-trained methods, whose reference is
    the base with the adapter disabled.
    """
    family = import_module(f".{method_spec(method).family}", __name__)
    device = torch.device(settings.device) if settings.device is not None else pick_device()
    dtype = resolve_dtype(settings.dtype, device)
    model_dir = Path(model_dir)
    adapter = is_adapter_folder(model_dir)
    if adapter and base_model is None:
        base_model = adapter_base(model_dir)
    if settings.holds_bytes is None:
        # what the job holds besides its batches, counted as its rule counts it, so that it cuts the same batches on
        # every run: a full fine-tune scored against a reference holds two copies of the weights, an adapter one
        copies = 2 if method_spec(method).scored_against_reference and not adapter else 1
        try:
            config = model_config(base_model if adapter else model_dir)
        except Exception as error:  # a hub id whose config cannot be fetched here: its resident memory, read at each call
            logger.warning("%s: no config.json to count the job's weights by (%s); batches follow its resident memory", method, error)
        else:
            settings = settings.but(holds_bytes=job_holdings(config, torch.empty(0, dtype=dtype).element_size(), copies))
    logger.info("%s scorer (%s family) on %s as %s: %s", method, method_spec(method).family, device, dtype, settings)
    tokenizer = load_tokenizer(model_dir if (model_dir / "tokenizer_config.json").is_file() else base_model)
    return family.from_folder(method, model_dir, base_model, tokenizer, device=device, dtype=dtype, beta=beta, template=template, settings=settings)


def model_scorer(method: str, model, tokenizer, *, settings: ScoringSettings = ScoringSettings(), reference=None,
                 beta: float | None = None, template: str | None = None):
    """The scorer of ``method`` for a model in memory, as ``load_scorer`` would build it from the saved folder.

    For model selection during training: ``model`` is the model being trained (a PEFT model
    scores with its adapter active; a causal LM, or a sequence classifier for the reward
    family), on its own device; ``reference`` the separate reference model of a
    DPO-trained method fully fine-tuned (``None``: the PEFT model with its adapter
    disabled); ``beta``, ``template`` and ``settings`` as for ``load_scorer`` (its ``device``
    and ``dtype`` are not used: the model stays where and as it is).
    """
    family = import_module(f".{method_spec(method).family}", __name__)
    return family.from_model(method, model, tokenizer, reference=reference, beta=beta, template=template, settings=settings)
