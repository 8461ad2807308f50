"""The trainer registry: every trainer kind, one entry each (as Tevatron keeps one trainer per loss).

A method names its trainer kind in :mod:`rerank_audit.methods`; training reads the kind's
entry here and asks nothing else about it. Adding a trainer kind is one entry plus its
``build`` function (and, for a loss TRL does not have, its Trainer subclass, as
:mod:`rerank_audit.training.lce`). An unknown kind is an error when the config is parsed
(``methods.check_registry``).

Imports nothing heavy: the Snakefile reads the names and fields at parse time; each
``build`` imports TRL (or its own trainer) when it is called.

| field            | meaning                                                                                |
|------------------|----------------------------------------------------------------------------------------|
| ``build``        | ``build(base, args, data, tokenizer, peft_config, settings, template, scoring)`` -> the trainer: ``args`` are the TrainingArguments every kind shares (``build.build_trainer``), ``data`` the training table (documents already fitted where ``fits_documents``) |
| ``task_type``    | the peft task type of its LoRA adapter: ``CAUSAL_LM`` or ``SEQ_CLS``                   |
| ``model_class``  | the transformers Auto class that loads the saved model                                 |
| ``tables``       | the training tables (``methods.TRAINING_COLUMNS``) it reads                            |
| ``requires``     | the hyper-parameters it needs beyond the shared ones (``TrainingSettings`` fields)     |
| ``fits_documents`` | True: ``fit_documents`` cuts the documents to ``max_length``; False: it trains on the tokens its scorer reads (the qlm template, ``rerank.max_length``) |
| ``merges_adapter`` | a LoRA adapter is merged into the model before saving (a new head: the saved folder is a full model) |
| ``scored_against_reference`` | its methods score β·(policy − reference), the implicit reward DPO optimises |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

CAUSAL_LM, SEQ_CLS = "CAUSAL_LM", "SEQ_CLS"


@dataclass(frozen=True)
class TrainerKind:
    name: str
    build: Callable[..., Any]
    task_type: str
    model_class: str
    tables: tuple[str, ...]
    requires: tuple[str, ...] = ()
    fits_documents: bool = True
    merges_adapter: bool = False
    scored_against_reference: bool = False


def _dataset(data, columns: tuple[str, ...]):
    """A Hugging Face dataset of ``data``'s ``columns`` (TRL's documented formats)."""
    from datasets import Dataset

    return Dataset.from_pandas(data[list(columns)].reset_index(drop=True), preserve_index=False)


def build_sft(base, args, data, tokenizer, peft_config, settings, template, scoring):
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(**args, completion_only_loss=True)
    return SFTTrainer(model=base, args=config, train_dataset=_dataset(data, ("prompt", "completion")), processing_class=tokenizer,
                      peft_config=peft_config)


def build_dpo(base, args, data, tokenizer, peft_config, settings, template, scoring):
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(**args, beta=float(settings.beta))
    return DPOTrainer(model=base, args=config, train_dataset=_dataset(data, ("prompt", "chosen", "rejected")), processing_class=tokenizer,
                      peft_config=peft_config)


def build_reward(base, args, data, tokenizer, peft_config, settings, template, scoring):
    """RewardTrainer loads AutoModelForSequenceClassification(num_labels=1) from the causal LM and sets
    config.pad_token_id to the tokenizer's pad (the head reads the last non-pad token); the tokenizer is
    saved with the model, so the scorer pads the same way."""
    from trl import RewardConfig, RewardTrainer

    tokenizer.pad_token = reward_pad_token(tokenizer)
    return RewardTrainer(model=base, args=RewardConfig(**args), train_dataset=_dataset(data, ("prompt", "chosen", "rejected")),
                         processing_class=tokenizer, peft_config=peft_config)


def build_lce(base, args, data, tokenizer, peft_config, settings, template, scoring):
    """LCETrainer on the scorer's tokens: the qlm ``template`` and the scoring ``max_length``."""
    from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE
    from rerank_audit.training.lce import LCEConfig, LCETrainer, group_dataset

    config = LCEConfig(**(args | {"max_length": scoring.max_length}), template=DEFAULT_QLM_TEMPLATE if template is None else template,
                       temperature=float(settings.temperature))
    return LCETrainer(model=base, args=config, train_dataset=group_dataset(data), processing_class=tokenizer, peft_config=peft_config)


def reward_pad_token(tokenizer) -> str:
    """The pad token a reward model trains with: the tokenizer's own if it is not the EOS, else its unk or <|endoftext|>.

    With pad == EOS the sequence classifier, which reads the last token that is not padding,
    would take the EOS that TRL appends for padding and read the document's last token.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return tokenizer.pad_token
    vocab = tokenizer.get_vocab()
    for token in (tokenizer.unk_token, "<|endoftext|>"):
        if token is not None and token in vocab and vocab[token] != tokenizer.eos_token_id:
            return token
    raise ValueError(
        f"the tokenizer pads with its EOS token {tokenizer.eos_token!r} and has no other token to pad with "
        "(no unk token, no <|endoftext|>), so the reward head could not read the EOS; save the base model's "
        "tokenizer with a pad token distinct from EOS (tokenizer.pad_token = ...; tokenizer.save_pretrained)"
    )


CAUSAL, CLASSIFIER = "AutoModelForCausalLM", "AutoModelForSequenceClassification"

TRAINERS: dict[str, TrainerKind] = {
    kind.name: kind
    for kind in (
        TrainerKind("sft", build_sft, CAUSAL_LM, CAUSAL, tables=("sft_examples", "query_examples")),
        TrainerKind("dpo", build_dpo, CAUSAL_LM, CAUSAL, tables=("answer_pairs", "document_pairs"), requires=("beta",),
                    scored_against_reference=True),
        # Always a full model: the new head is trained in full, and a LoRA adapter merged into the model.
        TrainerKind("reward", build_reward, SEQ_CLS, CLASSIFIER, tables=("document_pairs",), merges_adapter=True),
        # Localized contrastive estimation (training.lce): cut as the qlm scorer cuts, not by fit_documents.
        TrainerKind("lce", build_lce, CAUSAL_LM, CAUSAL, tables=("lce_groups",), requires=("temperature",), fits_documents=False),
    )
}


def trainer_kind(name: str) -> TrainerKind:
    """The registry entry of trainer kind ``name``; ValueError naming the known kinds otherwise."""
    try:
        return TRAINERS[name]
    except KeyError:
        raise ValueError(f"unknown trainer {name!r}; known trainers: {', '.join(TRAINERS)} (rerank_audit/training/registry.py)") from None
