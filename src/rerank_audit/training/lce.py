"""Localized contrastive estimation for query likelihood (``qlm_lce``): one trainer, one loss.

A training group is one relevant document of a query and K negatives from the first stage
(``training.examples.lce_groups``). Each member is scored as the ``qlm`` scorer scores it,
s = mean log P(query token | template with the document, the query tokens before it), and the
loss is the cross-entropy of the group's softmax(s / τ) with the relevant document (position
0) as the target (Gao et al. 2021, LCE; RankLLaMA / Tevatron train re-rankers this way). The
model learns to prefer *this* query after the relevant document over after the negatives:
a ranking of documents for a fixed query, the task the scorer is used for.

Training reads exactly the scorer's tokens: the collator takes each pair's token ids and
query positions from :class:`~rerank_audit.models.scoring.likelihood.QueryLikelihoodScorer`
itself (its template, its cut of too-long documents), and the loss takes the
log-probabilities with the scorer's head (:func:`~rerank_audit.models.scoring.engine.token_log_probs`):
the backbone runs on the whole batch, and only the final hidden states at the query's
positions are projected onto the vocabulary (the full logits of a group of documents would
take gigabytes).

``LCETrainer`` is a ``transformers.Trainer`` with its own ``compute_loss``, built like TRL's
trainers: a model id / folder (loaded with ``args.model_init_kwargs``) or a model, an
optional PEFT config (LoRA), ``LCEConfig`` (TrainingArguments plus ``max_length``,
``template``, ``temperature``). Checkpoints, resuming, bf16 autocast, CPU or CUDA are the
Trainer's own. One process (one device): the loss runs the backbone directly, not through a
DistributedDataParallel wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments, set_seed

from rerank_audit.models.scoring.engine import (
    ScoredSequence,
    _pad_right,
    backbone_of,
    token_log_probs,
)
from rerank_audit.models.scoring.likelihood import QueryLikelihoodScorer
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE
from rerank_audit.training.examples import RELEVANT

# The columns of ``lce_groups`` a training dataset is built from.
GROUP_DATA_COLUMNS = ["group", "position", "query", "document"]


@dataclass
class LCEConfig(TrainingArguments):
    """TrainingArguments of ``LCETrainer``; ``per_device_train_batch_size`` counts groups.

    ``max_length``: tokens of one scored sequence (the document's end is cut to fit, as the
    scorer cuts it; None: no limit); give it the scoring settings' ``max_length`` so that
    training and scoring read the same tokens. ``template``: the qlm template (holds
    ``{document}``). ``temperature``: τ of softmax(s / τ) over a group, s in nats per query
    token. ``model_init_kwargs``: ``from_pretrained`` keywords when the model is given as a
    name (e.g. ``{"dtype": "float32"}``).
    """

    max_length: int | None = field(default=ScoringSettings.max_length, metadata={"help": "tokens per sequence; the document is cut"})
    template: str = field(default=DEFAULT_QLM_TEMPLATE, metadata={"help": "qlm template holding {document}"})
    temperature: float = field(default=1.0, metadata={"help": "τ: the group's logits are the scores / τ"})
    model_init_kwargs: dict[str, Any] | None = field(default=None, metadata={"help": "from_pretrained keywords"})
    # The collator reads the raw columns (query, documents): the Trainer must not drop them.
    remove_unused_columns: bool = False

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def group_dataset(groups: pd.DataFrame) -> Dataset:
    """The training dataset of ``LCETrainer``: one row per group, (query str, documents list[str]).

    In: an ``lce_groups`` table (at least ``GROUP_DATA_COLUMNS``; one row per member, position 0
    the relevant document, then the negatives). Out: rows in group order; ``documents`` holds
    the members' texts by position, the relevant one first. Raises ValueError for a group
    whose positions are not 0, 1, ..., whose position 0 is not its relevant document (when
    the table has ``source``), whose query differs between members, or that has no negative.
    """
    missing = [column for column in GROUP_DATA_COLUMNS if column not in groups.columns]
    if missing:
        raise ValueError(f"lce groups lack the columns {missing} (rebuild them with examples.lce_groups)")
    ordered = groups.sort_values(["group", "position"], kind="stable")
    by_group = ordered.groupby("group", sort=True)
    sizes = by_group.size()
    bad = [
        group for group, members in by_group
        if list(members.position) != list(range(len(members))) or members["query"].nunique() != 1
        or ("source" in members.columns and members.source.iloc[0] != RELEVANT)
    ]  # fmt: skip
    if bad:
        raise ValueError(f"lce groups {bad[:5]}: positions must be 0, 1, ... with the relevant document at 0, one query per group")
    if (sizes < 2).any():
        raise ValueError(f"lce groups {list(sizes.index[sizes < 2])[:5]} have no negative: nothing to contrast")
    return Dataset.from_dict({"query": by_group["query"].first().tolist(), "documents": by_group.document.agg(list).tolist()})


@dataclass
class LCECollator:
    """Groups -> the batch ``LCETrainer`` reads, tokenized as the qlm scorer tokenizes.

    ``sequences(queries, documents)`` gives each pair's ``ScoredSequence`` (token ids, and the
    positions ``first .. stop-1`` whose hidden states predict the query's tokens): the
    scorer's own ``scored_sequences``. ``pad_id``: the tokenizer's pad token id.

    In: a list of B features {"query": str, "documents": list[str]} (relevant first); N = the
    total number of members, G = the largest group. Out: ``input_ids`` and
    ``attention_mask`` [N, L] (right-padded; members in group order), ``query_rows``,
    ``query_cols`` [M] (the (member, position) of every hidden state that predicts a query
    token, M in all), ``query_targets`` [M] (the token each predicts), ``group_mask`` [B, G]
    bool (True where a group has a member; members fill it row by row).
    """

    sequences: Callable[[Sequence[str], Sequence[str]], list[ScoredSequence]]
    pad_id: int

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        sizes = torch.tensor([len(feature["documents"]) for feature in features])
        queries = [feature["query"] for feature in features for _ in feature["documents"]]
        documents = [document for feature in features for document in feature["documents"]]
        sequences = self.sequences(queries, documents)
        ids, mask = _pad_right([s.ids for s in sequences], self.pad_id)
        rows = [row for row, s in enumerate(sequences) for _ in range(s.first, s.stop)]
        cols = [position for s in sequences for position in range(s.first, s.stop)]
        input_ids = torch.from_numpy(ids)
        rows_t, cols_t = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
        return {
            "input_ids": input_ids,
            "attention_mask": torch.from_numpy(mask),
            "query_rows": rows_t,
            "query_cols": cols_t,
            "query_targets": input_ids[rows_t, cols_t + 1],
            "group_mask": torch.arange(int(sizes.max()))[None, :] < sizes[:, None],
        }


def query_log_likelihoods(model, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean log P(query token | what precedes it) of each member, float32 [N], differentiable.

    The qlm scorer's score of each pair of a ``LCECollator`` batch: the backbone of ``model``
    (a causal LM, or a PEFT model with its adapter active) runs on all N sequences; only the
    M hidden states at the query positions go through the LM head. A member whose query has
    no token scores 0.0, as in the scorer.
    """
    rows = batch["query_rows"]
    hidden = backbone_of(model)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).last_hidden_state
    log_probs = token_log_probs(model, hidden[rows, batch["query_cols"]], batch["query_targets"])
    members = batch["input_ids"].shape[0]
    sums = log_probs.new_zeros(members).index_add(0, rows, log_probs)
    return sums / torch.bincount(rows, minlength=members).clamp(min=1)


def group_cross_entropy(scores: torch.Tensor, group_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over groups of −log softmax(scores / τ)[relevant], a scalar in nats.

    ``scores`` [N]: the members' scores in group order; ``group_mask`` [B, G] as the collator
    gives it (member 0 of each group is the relevant document); absent members take no part.
    """
    logits = torch.full(group_mask.shape, float("-inf"), dtype=scores.dtype, device=scores.device)
    logits = logits.masked_scatter(group_mask, scores / temperature)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


class LCETrainer(Trainer):
    """Trainer of ``qlm_lce``: the loss is ``group_cross_entropy`` of ``query_log_likelihoods``.

    ``model``: a model id / folder (loaded with ``args.model_init_kwargs``, as TRL does) or a
    causal LM; ``peft_config``: a peft LoraConfig (the model is wrapped, trained as an adapter
    and saved as one) or None (full fine-tuning); ``train_dataset``: ``group_dataset`` of
    ``lce_groups``; ``processing_class``: the tokenizer (with a pad token). ``self.scorer`` is
    the qlm scorer over the model being trained, whose tokenization the collator uses.
    """

    # compute_loss returns a mean over the batch's groups: the Trainer divides it by the
    # gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model, args: LCEConfig, train_dataset: Dataset, processing_class, peft_config=None, data_collator=None, callbacks=None):
        if not isinstance(args, LCEConfig):
            raise TypeError(f"LCETrainer needs an LCEConfig, got {type(args).__name__}")
        if processing_class.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token before training qlm_lce")
        set_seed(args.seed)  # before the adapter is initialised, as TRL does
        if isinstance(model, str):
            from trl.trainer.utils import create_model_from_path

            model = create_model_from_path(model, **(args.model_init_kwargs or {}))
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
            if args.activation_checkpointing:  # checkpointed layers need inputs that require grad
                model.enable_input_require_grads()
        self.scorer = QueryLikelihoodScorer(
            model, processing_class, template=args.template, settings=ScoringSettings(max_length=args.max_length, progress=False)
        )
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator or LCECollator(self.scorer.scored_sequences, processing_class.pad_token_id),
            train_dataset=train_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
        )

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        """The batch's mean LCE loss (scalar); with ``return_outputs`` also {"scores": [B, G] s / τ, −inf where no member}."""
        # The backbone runs outside the model's forward, where accelerate puts its autocast.
        with self.accelerator.autocast():
            scores = query_log_likelihoods(self.accelerator.unwrap_model(model), inputs)
        loss = group_cross_entropy(scores, inputs["group_mask"], self.args.temperature)
        if not return_outputs:
            return loss
        grid = torch.full(inputs["group_mask"].shape, float("-inf"), device=scores.device)
        return loss, {"scores": grid.masked_scatter(inputs["group_mask"], scores.detach() / self.args.temperature)}
