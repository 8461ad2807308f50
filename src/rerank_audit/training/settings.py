"""How a method trains: one typed object, built once from the config and passed whole.

``TrainingSettings.for_method(config, method)`` merges ``train.methods.<method>`` over
``train.defaults`` over the defaults here, once; the ``train`` rule passes it as a plain
dict (``as_dict``) and the script rebuilds it (``from_dict``), so a changed key changes the
rule's params and re-runs the job. The defaults here are the one place a training
hyper-parameter is defaulted; they equal ``config/config.yaml``'s ``train.defaults`` (a test
holds them together, and another these fields and the schema's ``$defs/hyper`` keys).
``precision`` is the one training dtype rule. Imports nothing heavy: the Snakefile builds
these objects at parse time, and ``check_training`` runs in ``check_config``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from rerank_audit.methods import method as method_spec
from rerank_audit.models.settings import AUTO
from rerank_audit.trainer_kinds import TRAINERS, trainer_kind

logger = logging.getLogger(__name__)
# Settings configured once under ``train`` for every method, not per method (``$defs/hyper``).
TRAIN_KEYS = ("temperature",)
# Settings read from ``model`` (the base model's, for every method).
MODEL_KEYS = ("dtype", "quantization", "attn_implementation")
WEIGHT_DTYPES = ("bfloat16", "float16")  # model.dtype values that load the base weights in that dtype


@dataclass(frozen=True)
class LoraSettings:
    """LoRA (PEFT): ``enabled`` false trains every weight; ``target_modules``: "all-linear" or module names."""

    enabled: bool = True
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"


@dataclass(frozen=True)
class TrainingSettings:
    """
    ``learning_rate``: peak rate (linear decay). ``epochs``: passes over the training table;
    ``max_steps``: optimizer steps, overrides ``epochs`` (None: by epochs). ``batch_size``:
    examples (lce: groups) per device per step; ``gradient_accumulation``: steps summed per
    update. ``max_length``: tokens of a training sequence (``fit_documents`` cuts the
    document to fit; not read by a trainer that trains on its scorer's tokens).
    ``save_steps``, ``logging_steps``: steps between checkpoints, between loss lines.
    ``beta``: DPO's β (the dpo trainer's; None elsewhere). ``temperature``: τ of the lce
    group softmax (``train.temperature``; None for other trainers). ``bf16``: bfloat16
    autocast, None = auto (where measured faster). ``activation_checkpointing``: recompute
    activations in the backward pass; True forces it on, None = auto (false reads as auto too: on only
    where the step would not fit otherwise, :mod:`rerank_audit.training.memory`; it changes time and
    memory, not the trained model). ``lora``: :class:`LoraSettings`. ``quantization``:
    ``model.quantization`` (none, 8bit, 4bit; auto never quantizes: it trains the weights as loaded).
    ``attn_implementation``: ``model.attn_implementation``. ``dtype``: the
    dtype the base weights load in, from ``model.dtype``: bfloat16 / float16 as set, float32
    for ``auto`` and float32 (both train float32 master weights, autocast as ``bf16`` says,
    so switching between them re-trains nothing); read by :meth:`precision`.
    """

    learning_rate: float = 2.0e-4
    epochs: float = 1
    max_steps: int | None = None
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_length: int = 224
    save_steps: int = 5
    logging_steps: int = 1
    beta: float | None = None
    temperature: float | None = None
    bf16: bool | None = None
    activation_checkpointing: bool | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)
    dtype: str = "float32"
    quantization: str = AUTO
    attn_implementation: str = AUTO

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainingSettings":
        """From plain values (``as_dict``'s, or a config's hyper-parameter mapping); absent keys keep their default.

        ``bf16: auto`` and ``activation_checkpointing: auto`` (or false) are None; ``lora`` a mapping of :class:`LoraSettings` keys. ValueError naming unknown keys.
        """
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        lora = dict(values.get("lora") or {})
        unknown += [f"lora.{key}" for key in sorted(set(lora) - {f.name for f in fields(LoraSettings)})]
        if unknown:
            raise ValueError(f"training settings: unknown {unknown}; the keys are {[f.name for f in fields(cls)]}")
        if isinstance(lora.get("target_modules"), (list, tuple)):
            lora["target_modules"] = tuple(lora["target_modules"])
        auto = {key: None for key in ("bf16", "activation_checkpointing") if values.get(key) == AUTO}
        if values.get("activation_checkpointing") is False:  # as_dict's "not forced on": auto
            auto["activation_checkpointing"] = None
        return cls(**{**values, **auto, "lora": LoraSettings(**lora)})

    @classmethod
    def for_method(cls, config: Mapping[str, Any], method: str) -> "TrainingSettings":
        """The settings ``method`` trains with: ``train.methods.<method>`` over ``train.defaults`` (``lora`` merged
        key by key), ``model.dtype``, ``model.quantization``, ``model.attn_implementation``, and the ``train`` keys its trainer requires (``temperature``).

        A key that some trainer kind requires (``beta``, ``temperature``) is kept only for the
        methods of that kind, so changing it re-trains no other method."""
        train, kind = config["train"], trainer_kind(method_spec(method).trainer)
        defaults, own = train["defaults"] or {}, train["methods"].get(method) or {}
        values = {**defaults, **own, "lora": {**(defaults.get("lora") or {}), **(own.get("lora") or {})}}
        values |= {key: train[key] for key in TRAIN_KEYS if key in kind.requires and key in train}
        owned = {key for other in TRAINERS.values() for key in other.requires} - set(kind.requires)
        model = config["model"]
        values = {key: value for key, value in values.items() if key not in owned} | {
            "dtype": weights_dtype(model["dtype"]), "quantization": model.get("quantization", AUTO),
            "attn_implementation": model.get("attn_implementation", AUTO)}  # fmt: skip
        return cls.from_dict(values)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a Snakemake ``params`` entry, the run fingerprint and ``training_config.json`` (rebuilt
        with ``from_dict``).

        Keys that change no trained model, or that are at their default, keep the dict as it was before
        they existed, so that adding them re-runs no job and discards no checkpoint: ``quantization`` and
        ``attn_implementation`` are left out while auto; ``activation_checkpointing`` (time and memory
        only, as ``memory_mb``) is written as before, false unless forced on (from_dict reads false as auto).
        """
        values = asdict(self)
        values["activation_checkpointing"] = bool(self.activation_checkpointing)
        for key in ("quantization", "attn_implementation"):
            if values[key] == AUTO:
                del values[key]
        if isinstance(self.lora.target_modules, tuple):
            values["lora"]["target_modules"] = list(self.lora.target_modules)
        return values

    def but(self, **changes) -> "TrainingSettings":
        return replace(self, **changes)

    def missing(self, trainer: str) -> list[str]:
        """The keys the trainer kind ``trainer`` requires that are not set (None)."""
        return [key for key in trainer_kind(trainer).requires if getattr(self, key) is None]

    def precision(self) -> tuple[str, bool]:
        """(the dtype the base weights load in, whether bf16 autocast runs), on the device training uses.

        The one training dtype rule. ``dtype`` bfloat16 / float16: the weights themselves in
        it (float32 where the GPU has no bf16 units), no autocast. float32 (model.dtype auto or float32): float32
        master weights, with bf16 autocast as ``bf16`` says; None (auto) follows
        :func:`rerank_audit.models.precision.auto_dtype` on the device: CUDA's bf16 units on a
        GPU, the matmul probe on the CPU.
        """
        import torch

        from rerank_audit.models.precision import auto_dtype

        if self.dtype not in ("float32", *WEIGHT_DTYPES):
            raise ValueError(f"training dtype {self.dtype!r}: use float32, bfloat16 or float16 (model.dtype auto trains float32 weights)")
        cuda = torch.cuda.is_available()
        if self.dtype in WEIGHT_DTYPES:
            # emulated bf16 does not count, as for scoring (models.precision.auto_dtype)
            if cuda and self.dtype == "bfloat16" and not torch.cuda.is_bf16_supported(including_emulation=False):
                logger.warning("model.dtype bfloat16: this GPU has no bf16 support; training in float32")
            else:
                return self.dtype, False
        if self.bf16 is not None:
            return "float32", bool(self.bf16)
        return "float32", auto_dtype("cuda" if cuda else "cpu") == torch.bfloat16


def weights_dtype(model_dtype: str) -> str:
    """The dtype a training loads the base weights in for ``model.dtype``: bfloat16 / float16 as set, else
    float32 (``auto`` decides bf16 *autocast* instead: ``train.defaults.bf16``)."""
    return model_dtype if model_dtype in WEIGHT_DTYPES else "float32"


def check_training(config: Mapping[str, Any]) -> None:
    """Raise unless every trained method (of ``methods`` and of ``train.methods``) has the keys its trainer requires.

    The message names the config key and the fix (``train.methods.<m>.beta`` or
    ``train.defaults.beta``; ``train.temperature``).
    """
    names = [m for m in dict.fromkeys([*config["methods"], *config["train"]["methods"]]) if method_spec(m).trained]
    for name in names:
        trainer = method_spec(name).trainer
        for key in TrainingSettings.for_method(config, name).missing(trainer):
            where = f"train.{key}" if key in TRAIN_KEYS else f"train.methods.{name}.{key}"
            also = "" if key in TRAIN_KEYS else f" (or train.defaults.{key} for every method)"
            raise ValueError(f"{where}: {name} trains with the {trainer} trainer, which requires {key}; set {where}{also}")
