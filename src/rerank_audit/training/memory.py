"""Peak memory of a training step, estimated before the trainer is built, and the settings that make it fit.

A step of a decoder-only transformer (Llama-like: RMSNorm, attention with grouped keys and
values, gated MLP) holds, in bytes, for T = sequences per step × max_length tokens:

- weights: every parameter at the dtype it loads in (``TrainingSettings.precision``: float32
  master weights unless model.dtype is bfloat16 / float16). With ``model.quantization`` the
  decoder's linear weights take 1 byte (8bit, LLM.int8) or 0.516 bytes (4bit NF4 in blocks of
  64 with a double-quantized absmax: 0.5 + (1 + 4/256)/64); embeddings and the output layer
  stay in the weights' dtype (bitsandbytes quantizes linear layers only and leaves lm_head).
- trainable: LoRA's A and B of every target linear (r × (in + out) each), with their
  gradients and AdamW's two moments: 4 copies, float32 (PEFT keeps adapters in float32 over
  half-precision bases), bfloat16 over a quantized base (TRL casts them so, as QLoRA does).
  A full fine-tune: every weight's gradient and two moments, in the weights' dtype.
- activations kept for the backward pass, per token and layer, at the activation size a
  (2 under bf16 autocast or half weights, else 4): the two norms' input and output (4h), the
  rotated queries (h), keys and values (2 kv), the attention output (h), the MLP's gate, up,
  activated gate and product (4i); HF's RMSNorm computes in float32, so in half precision it
  also keeps a float32 copy of each norm's input (2 × 4h bytes); LoRA with dropout keeps each
  target's dropped-out input and its mask ((6h + i) × (a + 1)) and its rank-r product (7r × a).
  With activation checkpointing only each layer's input stays (h × a per layer) and one
  layer's activations are rebuilt at a time.
  Under bf16 autocast over float32 weights, autocast also keeps a bfloat16 copy of every
  linear weight for the step (2 bytes each).
- logits, by the trainer kind's head (``TrainerKind.logits``): ``chunked``, TRL's log-prob
  kernel (SFT, DPO), which never holds the full logits, only float32 tiles of at most 4096
  tokens × 32768 vocabulary entries (two, at most: the tile and its softmax); ``full``, the
  logits of every position the loss reads (every token, or ``logit_positions`` per sequence:
  lce reads the query's) in the activation dtype, their float32 copy, the log-softmax and its
  gradient (V × (a + 12) per position);
  ``none``, a reward model's one-output head.

DPO with a LoRA adapter (the default) holds no second model: TRL computes the reference
log-probabilities with the adapter disabled, under no_grad, before the policy's forward, so
they add nothing at the peak; a full fine-tune keeps a frozen copy of the weights. Sequences
per step: sft one per example; dpo and reward chosen and rejected in one forward (two);
lce its group (``TrainerKind.sequences_per_example``). Sequences are counted at
``max_length``, the most a batch pads to.

The budget: ``USABLE_SHARE`` of what the job can allocate (:func:`rerank_audit.models.batching.available_memory`:
the GPU's free memory; on the CPU the least of MemAvailable, the cgroup and the job's mem_mb).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Mapping

from rerank_audit.models.batching import _Shape, available_memory
from rerank_audit.models.quantization import QUANTIZED, quantization_problem
from rerank_audit.training.settings import TrainingSettings

logger = logging.getLogger(__name__)

# Share of the job's free memory a training plans to fill: the rest is the CUDA context and
# cuBLAS workspaces, allocator fragmentation, the data loader and Python.
USABLE_SHARE = 0.9
BYTES_PER_WEIGHT = {"8bit": 1.0, "4bit": 0.5 + (1 + 4 / 256) / 64}
# TRL's chunked log-prob kernel (trl/kernels/chunked_logprob.py): its tiles' most tokens and vocabulary entries.
LOGPROB_TILE = (4096, 32768)
_ELEMENT = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of each part of a step's peak (module docstring) and how they were counted."""

    weights: float
    reference: float
    trainable: float
    activations: float
    logits: float
    tokens: int
    checkpointing: bool
    quantization: str

    @property
    def total(self) -> float:
        return self.weights + self.reference + self.trainable + self.activations + self.logits

    def describe(self) -> str:
        parts = ", ".join(f"{name} {_size(value)}" for name, value in (
            ("weights", self.weights), ("reference", self.reference), ("LoRA/optimizer", self.trainable),
            ("activations", self.activations), ("logits", self.logits)) if value)  # fmt: skip
        return (f"{_size(self.total)} ({parts}; {self.tokens} tokens a step, quantization {self.quantization}, "
                f"activation checkpointing {'on' if self.checkpointing else 'off'})")


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def estimate_training_memory(config: Mapping, settings: TrainingSettings, sequences_per_example: int, *, weights_dtype: str,
                             autocast: bool, quantization: str = "none", checkpointing: bool = False,
                             reference_copy: bool = False, logits: str = "chunked", logit_positions: int | None = None) -> TrainingMemory:
    """The peak bytes of one step (module docstring) of the model of ``config`` (a config.json dict) trained with
    ``settings`` (batch_size, max_length, lora); ``weights_dtype``/``autocast``: ``settings.precision()``'s;
    ``reference_copy``: a frozen copy of the weights (DPO without LoRA); ``logits``: chunked, full or none (module docstring);
    ``logit_positions``: positions per sequence whose full logits the loss keeps (None: every token)."""
    s = _Shape.of(config)
    w = _ELEMENT[weights_dtype]
    a = 2 if autocast or w == 2 else 4
    embeddings = s.vocab * s.hidden * (1 if s.tied else 2)
    linears = s.layers * (2 * s.hidden * s.heads * s.head_dim + 2 * s.hidden * s.kv_dim + 3 * s.hidden * s.intermediate)
    weights = embeddings * w + linears * BYTES_PER_WEIGHT.get(quantization, w)
    if autocast and w == 4 and quantization not in QUANTIZED:
        weights += linears * 2  # autocast's bfloat16 copies, cached for the step

    lora = settings.lora
    if lora.enabled:
        # the seven linears of a layer: q, k, v, o, gate, up, down (PEFT's all-linear leaves the output layer out)
        shapes = {"q_proj": (s.hidden, s.heads * s.head_dim), "k_proj": (s.hidden, s.kv_dim), "v_proj": (s.hidden, s.kv_dim),
                  "o_proj": (s.heads * s.head_dim, s.hidden), "gate_proj": (s.hidden, s.intermediate),
                  "up_proj": (s.hidden, s.intermediate), "down_proj": (s.intermediate, s.hidden)}  # fmt: skip
        targets = shapes if lora.target_modules == "all-linear" else {m: shapes[m] for m in lora.target_modules if m in shapes}
        adapter = s.layers * sum(lora.r * (n_in + n_out) for n_in, n_out in targets.values())
        trainable = 4 * adapter * (2 if quantization in QUANTIZED else 4)
        dropout = lora.dropout > 0
        lora_per_token = (sum(n_in for n_in, _ in targets.values()) * (a + 1) if dropout else 0) + len(targets) * lora.r * a
    else:
        trainable = 3 * (embeddings + linears) * w
        lora_per_token = 0
    tokens = int(settings.batch_size) * sequences_per_example * int(settings.max_length)
    norms_float32 = 2 * 4 * s.hidden if a < 4 else 0
    per_layer = (6 * s.hidden + 2 * s.kv_dim + 4 * s.intermediate) * a + norms_float32 + lora_per_token
    activations = tokens * (s.layers * s.hidden * a + per_layer) if checkpointing else tokens * s.layers * per_layer
    logit_bytes = {"chunked": 2 * 4 * min(tokens, LOGPROB_TILE[0]) * min(s.vocab, LOGPROB_TILE[1]), "none": 0,
                   "full": (tokens if logit_positions is None else min(tokens, int(settings.batch_size) * sequences_per_example * logit_positions))
                   * s.vocab * (a + 12)}  # fmt: skip
    return TrainingMemory(
        weights=weights, reference=weights if reference_copy else 0.0, trainable=trainable, activations=activations,
        logits=logit_bytes[logits], tokens=tokens, checkpointing=checkpointing, quantization=quantization,
    )


@dataclass(frozen=True)
class MemoryPlan:
    """The settings a training runs with (``activation_checkpointing`` and ``quantization`` resolved), its estimate and budget."""

    settings: TrainingSettings
    estimate: TrainingMemory
    available: float
    source: str

    def describe(self, method: str) -> str:
        return f"{method}: peak training memory estimated at {self.estimate.describe()}, of {_size(self.available)} usable ({self.source})"


def plan_training_memory(method: str, config: Mapping, settings: TrainingSettings, sequences_per_example: int, *, reference_copy: bool,
                         logits: str, device, memory_mb: int | None = None, logit_positions: int | None = None) -> MemoryPlan:
    """Resolve ``auto`` activation checkpointing and quantization to the least change that fits, and check the fit.

    Order tried (each only where the setting is auto): as set; checkpointing on (costs time
    only); 8bit; 4bit (these change the weights, and need bitsandbytes and a GPU). Raises
    ValueError naming the keys to change when nothing fits ``USABLE_SHARE`` of the job's memory.
    """
    import torch

    device = torch.device(device)
    problem = quantization_problem(settings.quantization, device.type == "cuda")
    if problem:
        raise ValueError(problem)
    if settings.quantization in QUANTIZED and not settings.lora.enabled:
        raise ValueError(f"model.quantization {settings.quantization}: quantized weights are frozen, and train.methods.{method}.lora.enabled "
                         "is false; train a LoRA adapter (lora.enabled: true) or set model.quantization: none")
    free, source = available_memory(device, memory_mb)
    usable = USABLE_SHARE * free
    checkpointing = [False, True] if settings.activation_checkpointing is None else [bool(settings.activation_checkpointing)]
    if settings.quantization == "auto":
        can_quantize = settings.lora.enabled and quantization_problem("4bit", device.type == "cuda") is None
        quantizations = ["none", "8bit", "4bit"] if can_quantize else ["none"]
    else:
        quantizations = [settings.quantization]
    candidates = [(q, c) for q in quantizations for c in checkpointing]
    weights_dtype, autocast = settings.precision()
    estimates = []
    for quantization, on in candidates:
        estimate = estimate_training_memory(config, settings, sequences_per_example, weights_dtype=weights_dtype, autocast=autocast,
                                            quantization=quantization, checkpointing=on, reference_copy=reference_copy, logits=logits,
                                            logit_positions=logit_positions)
        estimates.append(estimate)
        if estimate.total <= usable:
            return MemoryPlan(replace(settings, activation_checkpointing=on, quantization=quantization), estimate, usable, source)
    least = min(estimates, key=lambda e: e.total)
    raise ValueError(
        f"{method}: training needs about {least.describe()}, more than the {_size(usable)} this job can use "
        f"({USABLE_SHARE:.0%} of {_size(free)} {source}). Lower train.methods.{method}.batch_size (raise gradient_accumulation "
        f"to keep the effective batch) or max_length, set train.defaults.activation_checkpointing: true, model.quantization: 4bit "
        f"(a GPU with bitsandbytes) or model.dtype: bfloat16 (weights in half precision), or give the job more memory "
        f"(its GPU, or --set-resources train:mem_mb=...)"
    )
