"""The trainer registry: every trainer kind, one entry each (as Tevatron keeps one trainer per loss).

A method names its trainer kind in :mod:`rerank_audit.methods`; training reads the kind's
entry here and asks nothing else about it. Adding a trainer kind is one entry plus its
``build`` function (and, for a loss TRL does not have, its Trainer subclass, as
:mod:`rerank_audit.training.lce`). An unknown kind is an error when the config is parsed
(``methods.check_registry``).

Imports nothing but the standard library: the method registry, the config checks and the
Snakefile read the names and fields at parse time. ``build`` names its function as
``"module:function"`` (the kinds here: :mod:`rerank_audit.training.build`), imported only when
a trainer is built, so this table stays below every stage that trains.

| field            | meaning                                                                                |
|------------------|----------------------------------------------------------------------------------------|
| ``build``        | ``"module:function"`` of ``build(base, args, data, tokenizer, peft_config, settings, template, scoring)`` -> the trainer: ``args`` are the TrainingArguments every kind shares (``build.build_trainer``), ``data`` the training table (documents already fitted where ``fits_documents``) |
| ``task_type``    | the peft task type of its LoRA adapter: ``CAUSAL_LM`` or ``SEQ_CLS``                   |
| ``model_class``  | the transformers Auto class that loads the saved model                                 |
| ``tables``       | the training tables (``methods.TRAINING_COLUMNS``) it reads                            |
| ``requires``     | the hyper-parameters it needs beyond the shared ones (``TrainingSettings`` fields)     |
| ``fits_documents`` | True: ``fit_documents`` cuts the documents to ``max_length``; False: it trains on the tokens its scorer reads (the qlm template, ``rerank.max_length``) |
| ``merges_adapter`` | a LoRA adapter is merged into the model before saving (a new head: the saved folder is a full model) |
| ``scored_against_reference`` | its methods score β·(policy − reference), the implicit reward DPO optimises |
| ``logits`` | what its loss holds of the vocabulary logits: ``chunked`` (TRL's chunked log-prob kernel), ``full`` (every token's), ``none`` (a one-output head) |
| ``sequences_per_example`` | sequences one example puts through the model in a step (chosen and rejected: 2); None: its table's largest group (the training memory estimate, ``training.memory``) |
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

CAUSAL_LM, SEQ_CLS = "CAUSAL_LM", "SEQ_CLS"


@dataclass(frozen=True)
class TrainerKind:
    name: str
    build: str
    task_type: str
    model_class: str
    tables: tuple[str, ...]
    requires: tuple[str, ...] = ()
    fits_documents: bool = True
    merges_adapter: bool = False
    scored_against_reference: bool = False
    sequences_per_example: int | None = 1
    logits: str = "chunked"

    def builder(self) -> Callable[..., Any]:
        """The ``build`` function, imported on first use (``build`` is ``"module:function"``)."""
        module, _, function = self.build.partition(":")
        return getattr(import_module(module), function)


BUILD = "rerank_audit.training.build"  # where the build functions of the kinds below live
CAUSAL, CLASSIFIER = "AutoModelForCausalLM", "AutoModelForSequenceClassification"

TRAINERS: dict[str, TrainerKind] = {
    kind.name: kind
    for kind in (
        TrainerKind("sft", f"{BUILD}:build_sft", CAUSAL_LM, CAUSAL, tables=("sft_examples", "query_examples")),
        TrainerKind("dpo", f"{BUILD}:build_dpo", CAUSAL_LM, CAUSAL, tables=("answer_pairs", "document_pairs"), requires=("beta",),
                    scored_against_reference=True, sequences_per_example=2),
        # Always a full model: the new head is trained in full, and a LoRA adapter merged into the model.
        TrainerKind("reward", f"{BUILD}:build_reward", SEQ_CLS, CLASSIFIER, tables=("document_pairs",), merges_adapter=True,
                    sequences_per_example=2, logits="none"),
        # Localized contrastive estimation (training.lce): cut as the qlm scorer cuts, not by fit_documents.
        TrainerKind("lce", f"{BUILD}:build_lce", CAUSAL_LM, CAUSAL, tables=("lce_groups",), requires=("temperature",), fits_documents=False,
                    sequences_per_example=None, logits="full"),
    )
}


def trainer_kind(name: str) -> TrainerKind:
    """The registry entry of trainer kind ``name``; ValueError naming the known kinds otherwise."""
    try:
        return TRAINERS[name]
    except KeyError:
        raise ValueError(f"unknown trainer {name!r}; known trainers: {', '.join(TRAINERS)} (rerank_audit/trainer_kinds.py)") from None
