"""Build the trainer of a method: the arguments every trainer kind shares, LoRA, and its kind's ``build``.

:func:`build_trainer` reads the method's trainer kind (:mod:`rerank_audit.trainer_kinds`)
and its :class:`~rerank_audit.training.settings.TrainingSettings` and asks nothing else:
a new kind is an entry of the registry, never a branch here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from peft import LoraConfig
from transformers import ProgressCallback

from rerank_audit.methods import method as method_spec
from rerank_audit.models.loading import resolve_attn_implementation
from rerank_audit.models.quantization import QUANTIZED, bits_and_bytes_config
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.training.checkpoints import KEEP_CHECKPOINTS
from rerank_audit.trainer_kinds import SEQ_CLS, trainer_kind
from rerank_audit.training.settings import LoraSettings, TrainingSettings

logger = logging.getLogger(__name__)


def build_trainer(method: str, base: str, data: pd.DataFrame, tokenizer, checkpoints: Path, settings: TrainingSettings, seed: int,
                   template: str | None = None, scoring: ScoringSettings | None = None):
    """The trainer of ``method``: its registry entry's trainer kind, built on ``data`` (documents already fitted
    to max_length where the kind ``fits_documents``) with the arguments every kind shares.

    ``template`` and ``scoring`` (its ``max_length``): the qlm scorer's, for a kind that trains on its scorer's tokens.
    """
    kind = trainer_kind(method_spec(method).trainer)
    args = trainer_arguments(settings, checkpoints, seed)
    peft_config = _lora_config(settings.lora, kind.task_type)
    trainer = kind.builder()(base, args, data, tokenizer, peft_config, settings, template, scoring or ScoringSettings())
    dropped = len(data) - len(trainer.train_dataset)
    if kind.fits_documents and dropped:  # fit_documents made every sequence fit: a drop means it and TRL count tokens differently
        raise RuntimeError(
            f"{method}: TRL dropped {dropped} of {len(data)} examples longer than max_length={settings.max_length} "
            "although fit_documents cut their documents to fit"
        )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LoggedProgress())
    return trainer


def trainer_arguments(settings: TrainingSettings, checkpoints: Path, seed: int) -> dict:
    """The TrainingArguments every trainer kind shares, from ``settings`` (``activation_checkpointing`` and
    ``quantization`` resolved by :func:`rerank_audit.training.memory.plan_training_memory`; auto left: off, none)."""
    weights_dtype, bf16 = settings.precision()
    cuda = torch.cuda.is_available()
    model_init = {"dtype": weights_dtype, "attn_implementation": resolve_attn_implementation(
        settings.attn_implementation, "cuda" if cuda else "cpu", getattr(torch, "bfloat16" if bf16 else weights_dtype))}
    if settings.quantization in QUANTIZED:
        compute = "bfloat16" if cuda and torch.cuda.is_bf16_supported(including_emulation=False) else "float16"
        model_init["quantization_config"] = bits_and_bytes_config(settings.quantization, compute)
    return dict(
        output_dir=str(checkpoints),
        learning_rate=float(settings.learning_rate),
        num_train_epochs=float(settings.epochs),
        max_steps=int(settings.max_steps or -1),
        per_device_train_batch_size=int(settings.batch_size),
        gradient_accumulation_steps=int(settings.gradient_accumulation),
        max_length=int(settings.max_length),
        save_strategy="steps",
        save_steps=int(settings.save_steps),
        save_total_limit=KEEP_CHECKPOINTS,
        logging_steps=int(settings.logging_steps),
        report_to="none",
        disable_tqdm=False,
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        fp16=False,
        # transformers accepts bf16 autocast on the CPU only when told the CPU is the device.
        use_cpu=not torch.cuda.is_available(),
        # TRL turns it on by default; it only pays off where the step would not fit otherwise (training.memory).
        activation_checkpointing=bool(settings.activation_checkpointing),
        dataloader_pin_memory=cuda,
        # float32 master weights with bf16 autocast, or the weights themselves in model.dtype; quantized linears (QLoRA)
        model_init_kwargs=model_init,
    )


def _lora_config(lora: LoraSettings, task_type: str):
    """A peft LoraConfig from the ``lora`` settings, or None when LoRA is off."""
    if not lora.enabled:
        return None
    return LoraConfig(
        r=int(lora.r),
        lora_alpha=float(lora.alpha),
        lora_dropout=float(lora.dropout),
        target_modules=lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules),
        task_type=task_type,
        # A sequence classifier's head is new: it must be trained in full and saved with the adapter.
        modules_to_save=["score"] if task_type == SEQ_CLS else None,
    )


class LoggedProgress(ProgressCallback):
    """Trainer's tqdm bar (stderr), with the metric lines sent to ``logging`` instead of stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {key: f"{value:.4g}" if isinstance(value, float) else value for key, value in logs.items() if key != "total_flos"}
            logger.info("step %d/%d %s", state.global_step, state.max_steps, shown)


# The build functions of the trainer kinds (rerank_audit.trainer_kinds names them): TRL's trainer on its documented
# dataset format, or (lce) the Trainer subclass of training.lce.


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
