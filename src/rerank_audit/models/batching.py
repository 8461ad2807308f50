"""How many sequences go into one forward pass: a fixed count, or a token budget sized for the device.

A batch of length-sorted sequences costs about (rows × longest row) tokens of activations and
key/value cache. With a token budget, short sequences travel in large batches and long ones in
small batches, so a GPU stays busy on short claims and does not run out of memory on long
documents. The budget is sized from the device at run time, never assumed:

- CUDA: the free memory, divided by what one token costs in this model (its key/value cache
  for every layer, kept for a chunk of prefixes, and one layer's activations);
- CPU: the last-level cache, divided by one layer's activations per token, so that a batch's
  working set stays in cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

logger = logging.getLogger(__name__)

# Share of the free GPU memory a batch may plan to use (the rest: allocator slack, logits, other jobs).
GPU_MEMORY_SHARE = 0.4
# Queries whose prefixes are cached together: enough pairs for this many batches. Bounds the
# memory of the prefix cache (held beside the batch itself) while leaving room to sort by length.
BATCHES_PER_CHUNK = 8
TOKEN_BOUNDS = (512, 262_144)
DEFAULT_CACHE_BYTES = 8 << 20  # when the CPU's last-level cache cannot be read


@dataclass(frozen=True)
class Batching:
    """At most ``rows`` sequences and ``tokens`` padded tokens per forward pass (None: no limit)."""

    rows: int | None = None
    tokens: int | None = None

    def split(self, lengths: Sequence[int], extra: int | Sequence[int] = 0) -> list[range]:
        """Consecutive batches of items whose ``lengths`` are sorted longest first.

        A batch costs (its rows) × (its first item's length + the largest ``extra`` among its
        rows) tokens; ``extra``: key/value positions a row attends to beyond its own tokens
        (a cached prefix), one for all or one per item. Every batch holds at least one item.
        """
        extras = [extra] * len(lengths) if isinstance(extra, int) else list(extra)
        batches, start = [], 0
        while start < len(lengths):
            stop, widest = start + 1, extras[start]
            while stop < len(lengths) and (self.rows is None or stop - start < self.rows):
                wider = max(widest, extras[stop])
                if self.tokens is not None and (stop - start + 1) * (lengths[start] + wider) > self.tokens:
                    break
                stop, widest = stop + 1, wider
            batches.append(range(start, stop))
            start = stop
        return batches

    def describe(self) -> str:
        return f"{self.rows} sequences" if self.rows is not None else f"{self.tokens} tokens"


def batching_for(settings, model) -> Batching:
    """``settings.batch_size`` sequences when set; else a budget of ``settings.batch_tokens``
    tokens (None: :func:`token_budget` of ``model``). ``settings``: a ScoringSettings."""
    if settings.batch_size is not None:
        return Batching(rows=int(settings.batch_size))
    tokens = int(settings.batch_tokens) if settings.batch_tokens is not None else token_budget(model)
    return Batching(tokens=tokens)


def token_budget(model) -> int:
    """Padded tokens per forward pass for ``model`` on its device (see the module docstring)."""
    import torch

    parameter = next(model.parameters())
    config = model.config.get_text_config()
    width = parameter.element_size()
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv_dim = (getattr(config, "num_key_value_heads", None) or heads) * (getattr(config, "head_dim", None) or hidden // heads)
    activations = (4 * hidden + 2 * getattr(config, "intermediate_size", 4 * hidden)) * width
    if parameter.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(parameter.device)
        per_token = (BATCHES_PER_CHUNK + 1) * 2 * layers * kv_dim * width + activations
        tokens = GPU_MEMORY_SHARE * free / per_token
    else:
        tokens = _last_level_cache_bytes() / activations
    budget = int(min(max(tokens, TOKEN_BOUNDS[0]), TOKEN_BOUNDS[1]))
    logger.debug("token budget %d per forward pass on %s (%s)", budget, parameter.device, "free memory" if parameter.device.type == "cuda" else "CPU cache")
    return budget


def _last_level_cache_bytes() -> int:
    """The largest CPU cache Linux reports (sysfs), else ``DEFAULT_CACHE_BYTES``."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        try:
            sizes.append(int(text.rstrip("KMG")) * scale)
        except ValueError:
            continue
    return max(sizes, default=DEFAULT_CACHE_BYTES)
