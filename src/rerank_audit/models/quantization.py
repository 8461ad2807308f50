"""Base weights in 8 or 4 bits for training (QLoRA): whether this machine can, and the BitsAndBytesConfig.

``model.quantization``: ``none``, ``8bit`` (LLM.int8), ``4bit`` (QLoRA as its paper and
TRL / PEFT document it: NF4 weights, double-quantized constants, compute in bfloat16, or
float16 without bf16 units), or ``auto``: the least compression whose training fits the job
(:mod:`rerank_audit.training.memory`; none without a GPU). Quantized weights are frozen: only
a LoRA adapter trains over them. Scoring loads the base in ``model.dtype`` and merges the
adapter, as for any LoRA training.

Imports nothing heavy at module level: the config check (:func:`quantization_problem`) runs at parse time.
"""

from __future__ import annotations

import importlib.util

QUANTIZATIONS = ("auto", "none", "8bit", "4bit")
QUANTIZED = ("8bit", "4bit")


def quantization_problem(quantization: str, cuda: bool | None = None) -> str | None:
    """Why ``quantization`` cannot run here, naming the key and the fix; None when it can (or is none/auto).

    ``cuda``: whether the job sees a GPU (None: not known yet, as when the config is parsed on a
    machine that only submits jobs).
    """
    if quantization not in QUANTIZED:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        return (f"model.quantization {quantization}: the bitsandbytes package is not installed; install it on the GPU machine "
                "(pip install bitsandbytes) or set model.quantization: none (auto quantizes only where it can)")
    if cuda is False:
        return (f"model.quantization {quantization}: bitsandbytes quantizes on a CUDA GPU and this job sees none; run the train jobs "
                "on a GPU (--resources gpu=1, or the slurm profile) or set model.quantization: none (auto: none without a GPU)")
    return None


def bits_and_bytes_config(quantization: str, compute_dtype: str):
    """The transformers BitsAndBytesConfig of ``quantization`` (8bit or 4bit); ``compute_dtype``: bfloat16 or float16."""
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=getattr(torch, compute_dtype))
    raise ValueError(f"model.quantization {quantization!r}: only 8bit and 4bit have a BitsAndBytesConfig")
