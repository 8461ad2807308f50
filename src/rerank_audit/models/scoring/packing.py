"""Padding-free scoring: sequences packed end to end into one row, each attending only to itself.

Transformers reads a packed row from its ``position_ids`` (each sequence restarts at 0) when
no attention mask and no cache are passed, as its flattening collator does for training.
flash_attention_2 (and 3) then run variable-length attention: no padding and no mask. sdpa
and eager build a dense block-diagonal mask over the whole row instead (correct, and what the
tests run on the CPU, but quadratic in the row's length), so packing is chosen automatically
only for the variable-length implementations, and only where no prefix is shared: a cached
prefix, which packing cannot use, already saves more than the padding that length-sorted
batches leave. Every prompt shares the template's opening tokens, so with prefix reuse on (the
pipeline's only setting) auto never packs: packing runs where ``ScoringSettings.packing`` is
true or ``prefix_reuse`` false (the Python API, bench/scoring.py variants). Untested on a GPU
so far (bench/gpu_check.py runs a ``packing=true`` variant where flash-attn is installed).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..batching import Batching
from .engine import Head, ScoredSequence, to_device

# Attention implementations that run packed sequences as variable-length attention, without a dense mask.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")


def packs(backbone, packing: bool | None) -> bool:
    """Whether to score packed: ``packing`` (ScoringSettings.packing) when set, else where the attention is variable-length."""
    if packing is not None:
        return packing
    return getattr(backbone.config, "_attn_implementation", None) in VARLEN_ATTENTION


def packed_rows(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices of ``lengths`` packed into rows of at most ``budget`` tokens, longest first (a longer one alone)."""
    rows, row, used = [], [], 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
        if row and used + lengths[i] > budget:
            rows.append(row)
            row, used = [], 0
        row.append(i)
        used += lengths[i]
    return rows + [row] if row else rows


def sum_head_packed(backbone, sequences: list[ScoredSequence], head: Head, batching: Batching, pad_id: int, bar) -> np.ndarray:
    """Σ head over each sequence's positions (as :func:`.engine.sum_head_over_positions`), float64, one packed row per forward.

    A row holds at most the budget's tokens (``batching.tokens``, or ``batching.rows`` × the longest sequence).
    """
    device = next(backbone.parameters()).device
    lengths = [len(s.ids) for s in sequences]
    budget = batching.tokens if batching.tokens is not None else (batching.rows or 1) * max(lengths)
    values, owners = [], []
    for row in packed_rows(lengths, budget):
        ids = np.fromiter((t for i in row for t in sequences[i].ids), dtype=np.int64)
        row_lengths = np.array([lengths[i] for i in row])
        starts = np.cumsum(row_lengths) - row_lengths
        positions = np.arange(len(ids)) - np.repeat(starts, row_lengths)
        hidden = backbone(input_ids=to_device(ids[None], device), position_ids=to_device(positions[None], device), use_cache=False).last_hidden_state[0]
        firsts = np.array([sequences[i].first for i in row])
        counts = np.array([sequences[i].stop for i in row]) - firsts
        col = np.repeat(starts + firsts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        following = np.append(ids[1:], pad_id)
        following[starts + row_lengths - 1] = pad_id  # a sequence's last token is followed by nothing of its own
        values.append(head(hidden[to_device(col, device)], to_device(following[col], device)))
        owners.append(np.repeat(np.array(row), counts))
        bar.update(len(row))
        del hidden
    scores = np.zeros(len(sequences), dtype=np.float64)
    if values:
        np.add.at(scores, np.concatenate(owners), torch.cat(values).double().cpu().numpy())
    return scores
