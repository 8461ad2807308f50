"""Finding and loading base models: model specs, device and dtype policy, tokenizer, causal LM.

A *model spec* in the config is one of
- ``bundled:<name>`` — a model shipped inside an installed package (see ``bundled.py``),
  converted once to ``<models_dir>/<name>``;
- a local folder with a Hugging Face model;
- a Hugging Face Hub id (downloaded by transformers only if the user names one).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from .precision import auto_dtype

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device() -> torch.device:
    """CUDA when a GPU is visible, otherwise the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_dtype(requested: str | torch.dtype | None, device: torch.device | str) -> torch.dtype:
    """The weight dtype on ``device``: ``requested`` when named, else :func:`precision.auto_dtype`.

    ``requested`` is ``None``/``"auto"`` or one of ``float32``, ``bfloat16``, ``float16``
    (the config's ``dtype``). Auto is bfloat16 only where it is measured to be faster: on a
    CUDA GPU with bf16 units, or on a CPU whose matmul probe shows bf16 ahead; else float32.
    """
    if isinstance(requested, torch.dtype):
        return requested
    if requested in (None, "auto"):
        return auto_dtype(device)
    if requested not in _DTYPES:
        raise ValueError(f"unknown dtype {requested!r}; use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[requested]


def resolve_attn_implementation(requested: str | None, device: torch.device | str, dtype: torch.dtype) -> str | None:
    """The transformers ``attn_implementation`` for ``requested`` (``model.attn_implementation``).

    ``auto`` (or None): flash_attention_2 where its package is installed, on a GPU, with half-precision
    weights (the only case its kernels run), else None: transformers chooses (sdpa where the
    architecture has it, else eager; asked for sdpa by name, transformers 5 raises for an
    architecture without it). A named one is checked, so a config that cannot run says so before
    the model loads.
    """
    device = torch.device(device)
    flash = importlib.util.find_spec("flash_attn") is not None and device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
    if requested in (None, "auto"):
        return "flash_attention_2" if flash else None
    if requested == "flash_attention_2" and not flash:
        raise ValueError(
            f"model.attn_implementation flash_attention_2 needs the flash_attn package, a CUDA GPU and bfloat16/float16 weights "
            f"(here: {'installed' if importlib.util.find_spec('flash_attn') else 'not installed'}, {device.type}, {dtype}); "
            "set model.attn_implementation: auto (transformers chooses here) or install flash-attn on the GPU machine"
        )
    if requested not in ("sdpa", "eager", "flash_attention_2"):
        raise ValueError(f"model.attn_implementation {requested!r}: use auto, sdpa, eager or flash_attention_2")
    return requested


def attention_kwargs(attention: str | None) -> dict:
    """``from_pretrained``'s attention argument: none for None, so transformers picks as it does unasked."""
    return {} if attention is None else {"attn_implementation": attention}


def load_tokenizer(path: str | Path):
    """The tokenizer at ``path``, with a pad token (eos, else unk, when the model has none).

    Padding side is left, so a padded batch ends where each prompt ends (generation and
    last-position scoring). The scorers pad their own tensors and do not depend on it.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise ValueError(f"{path}: tokenizer has neither pad, eos nor unk token to pad with")
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(path: str | Path, device: torch.device | str | None = None, dtype: str | torch.dtype | None = None,
                   attn_implementation: str | None = None):
    """A causal LM from ``path`` in eval mode, on ``device`` (default: :func:`pick_device`), with the attention
    of :func:`resolve_attn_implementation`."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device) if device is not None else pick_device()
    dtype = resolve_dtype(dtype, device)
    attention = resolve_attn_implementation(attn_implementation, device, dtype)
    logger.info("loading causal LM %s on %s as %s, attention %s", path, device, dtype, attention or "transformers' choice")
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **attention_kwargs(attention))
    return model.to(device).eval()


def load_sequence_classifier(path: str | Path, device: torch.device | str | None = None, dtype: str | torch.dtype | None = None,
                             attn_implementation: str | None = None):
    """A one-output sequence classifier (reward model) from ``path`` in eval mode."""
    from transformers import AutoModelForSequenceClassification

    device = torch.device(device) if device is not None else pick_device()
    dtype = resolve_dtype(dtype, device)
    attention = resolve_attn_implementation(attn_implementation, device, dtype)
    logger.info("loading reward model %s on %s as %s, attention %s", path, device, dtype, attention or "transformers' choice")
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=dtype, **attention_kwargs(attention))
    return model.to(device).eval()
