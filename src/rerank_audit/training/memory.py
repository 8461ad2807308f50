"""Peak memory of a training step, estimated before the trainer is built, and the settings that make it fit.

A step of a decoder-only transformer (Llama-like: RMSNorm, attention with grouped keys and
values, gated MLP) holds, in bytes, for T = sequences per step × max_length tokens:

- weights: every parameter at the dtype it loads in (``TrainingSettings.precision``: float32
  master weights unless model.dtype is bfloat16 / float16). With ``model.quantization`` the
  decoder's linear weights take 1 byte (8bit, LLM.int8) or 0.516 bytes (4bit NF4 in blocks of
  64 with a double-quantized absmax: 0.5 + (1 + 4/256)/64); embeddings and the output layer
  stay in the weights' dtype (bitsandbytes quantizes linear layers only and leaves lm_head).
- trainable: LoRA's A and B of every target linear (r × (in + out) each), with their
  gradients and AdamW's two moments: 4 copies at the adapter size e: float32 (PEFT's
  autocast_adapter_dtype keeps adapters in float32 over half-precision bases: e = 4),
  bfloat16 over a quantized base (TRL's SFT/DPO trainers cast them so, as QLoRA does: e = 2).
  A full fine-tune: every weight's gradient and two moments, in the weights' dtype.
- activations kept for the backward pass, per token and layer, at the activation size a
  (2 under bf16 autocast or half weights, else 4): the two norms' inputs (2h), the rotated
  queries (h), keys and values (2 kv), the attention output (h), the MLP's gate, up and
  activated gate (3i); the norms' outputs and the MLP product (2h + i) only where a linear
  reading them keeps its input (a full fine-tune, or LoRA's A reading them uncast: float32
  weights, no dropout; a frozen linear needs only its weight for the backward pass); HF's RMSNorm computes in float32, so in half precision it
  also keeps a float32 copy of each norm's input (2 × 4h bytes). LoRA: PEFT casts each target's
  input to the adapter dtype (peft/tuners/lora/layer.py, ``_cast_input_dtype``), and its A and B
  keep their inputs at the size c they compute in (e; 2 under autocast, which casts them again):
  per element of the targets' inputs (6h + i) c bytes where the input is a new tensor (dropout,
  a cast or autocast; none for float32 weights without dropout), plus dropout's mask (1 byte on
  CUDA, e on the CPU, where it is kept in the input's dtype); and each rank-r product (7r × c).
  With activation checkpointing only each layer's input stays (h × a per layer) and one
  layer's activations are rebuilt at a time. After the last layer, per token: the final norm's
  input and output (2h × a) and, in half precision, its float32 copy (4h).
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

from rerank_audit.models.batching import ModelShape, available_memory
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
                             reference_copy: bool = False, logits: str = "chunked", logit_positions: int | None = None,
                             device: str = "cuda") -> TrainingMemory:
    """The peak bytes of one step (module docstring) of the model of ``config`` (a config.json dict) trained with
    ``settings`` (batch_size, max_length, lora); ``weights_dtype``/``autocast``: ``settings.precision()``'s;
    ``reference_copy``: a frozen copy of the weights (DPO without LoRA); ``logits``: chunked, full or none (module docstring);
    ``logit_positions``: positions per sequence whose full logits the loss keeps (None: every token); ``device``: cuda or
    cpu (the size of LoRA dropout's mask)."""
    s = ModelShape.of(config)
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
        e = 2 if quantization in QUANTIZED else 4  # the adapter's element size (module docstring)
        trainable = 4 * adapter * e
        dropout = lora.dropout > 0
        autocast_copies = autocast and w == 4 and quantization not in QUANTIZED
        c = 2 if autocast_copies else e  # what lora_A and lora_B keep their inputs in
        new_input = dropout or autocast_copies or a != e  # else lora_A keeps the base linear's own input
        mask = (1 if device == "cuda" else e) if dropout else 0
        lora_per_token = sum(n_in for n_in, _ in targets.values()) * ((c if new_input else 0) + mask) + len(targets) * lora.r * c
        # frozen linears keep no input: the norms' outputs and the MLP product stay only where lora_A keeps them uncast
        linear_inputs = 0 if new_input else 2 * s.hidden + s.intermediate
    else:
        trainable = 3 * (embeddings + linears) * w
        lora_per_token = 0
        linear_inputs = 2 * s.hidden + s.intermediate
    tokens = int(settings.batch_size) * sequences_per_example * int(settings.max_length)
    norms_float32 = 2 * 4 * s.hidden if a < 4 else 0
    per_layer = (4 * s.hidden + 2 * s.kv_dim + 3 * s.intermediate + linear_inputs) * a + norms_float32 + lora_per_token
    # after the last layer: the final norm's input and output (the head's input, which the loss keeps), its float32 copy
    final = 2 * s.hidden * a + (4 * s.hidden if a < 4 else 0)
    activations = tokens * ((s.layers * s.hidden * a + per_layer) if checkpointing else s.layers * per_layer) + tokens * final
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
    """Resolve ``auto`` activation checkpointing (and ``auto`` quantization, to none) and check the fit.

    Auto checkpointing is tried off, then on (it costs time, not results). Auto quantization never
    quantizes: 8 and 4 bits change the trained model, so they are the user's choice, and a plan
    that depended on the GPU's free memory would train different models from the same config.
    Raises ValueError naming the keys to change (``model.quantization: 4bit`` among them) when
    nothing fits ``USABLE_SHARE`` of the job's memory.
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
    quantization = "none" if settings.quantization == "auto" else settings.quantization
    candidates = [(quantization, c) for c in checkpointing]
    weights_dtype, autocast = settings.precision()
    estimates = []
    for quantization, on in candidates:
        estimate = estimate_training_memory(config, settings, sequences_per_example, weights_dtype=weights_dtype, autocast=autocast,
                                            quantization=quantization, checkpointing=on, reference_copy=reference_copy, logits=logits,
                                            logit_positions=logit_positions, device=device.type)
        estimates.append(estimate)
        if estimate.total <= usable:
            return MemoryPlan(replace(settings, activation_checkpointing=on, quantization=quantization), estimate, usable, source)
    least = min(estimates, key=lambda e: e.total)
    raise ValueError(
        f"{method}: training needs about {least.describe()}, more than the {_size(usable)} this job can use "
        f"({USABLE_SHARE:.0%} of {_size(free)} {source}). Lower train.methods.{method}.batch_size (raise gradient_accumulation "
        f"to keep the effective batch) or max_length, {'' if True in checkpointing else 'set train.defaults.activation_checkpointing: true, '}"
        f"set model.quantization: 4bit (QLoRA: a GPU with bitsandbytes; it trains "
        f"on 4-bit base weights, a different model) or model.dtype: bfloat16 (weights in half precision), or give the job more memory "
        f"(its GPU, or --set-resources train:mem_mb=...)"
    )
