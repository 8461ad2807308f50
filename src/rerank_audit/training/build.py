"""Build the trainer of a method: the arguments every trainer kind shares, LoRA, and its kind's ``build``.

:func:`build_trainer` reads the method's trainer kind (:mod:`rerank_audit.training.registry`)
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
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.training.checkpoints import KEEP_CHECKPOINTS
from rerank_audit.training.registry import SEQ_CLS, trainer_kind
from rerank_audit.training.settings import LoraSettings, TrainingSettings

logger = logging.getLogger(__name__)


def build_trainer(method: str, base: str, data: pd.DataFrame, tokenizer, checkpoints: Path, settings: TrainingSettings, seed: int,
                   template: str | None = None, scoring: ScoringSettings | None = None):
    """The trainer of ``method``: its registry entry's trainer kind, built on ``data`` (documents already fitted
    to max_length where the kind ``fits_documents``) with the arguments every kind shares.

    ``template`` and ``scoring`` (its ``max_length``): the qlm scorer's, for a kind that trains on its scorer's tokens.
    """
    kind = trainer_kind(method_spec(method).trainer)
    weights_dtype, bf16 = settings.precision()
    args = dict(
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
        # TRL turns it on by default; it only pays off for models much larger than the default base.
        activation_checkpointing=bool(settings.activation_checkpointing),
        dataloader_pin_memory=torch.cuda.is_available(),
        # float32 master weights with bf16 autocast, or the weights themselves in model.dtype
        model_init_kwargs={"dtype": weights_dtype},
    )
    peft_config = _lora_config(settings.lora, kind.task_type)
    trainer = kind.build(base, args, data, tokenizer, peft_config, settings, template, scoring or ScoringSettings())
    dropped = len(data) - len(trainer.train_dataset)
    if kind.fits_documents and dropped:  # fit_documents made every sequence fit: a drop means it and TRL count tokens differently
        raise RuntimeError(
            f"{method}: TRL dropped {dropped} of {len(data)} examples longer than max_length={settings.max_length} "
            "although fit_documents cut their documents to fit"
        )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LoggedProgress())
    return trainer


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
