"""The batched engine every scoring family runs on, and the helpers the families share.

A family turns (query, document) pairs into :class:`ScoredSequence` s (token ids plus the
positions whose final hidden states matter) and a *head* (hidden state, following token →
number); :func:`sum_head_over_positions` runs them: pairs are tokenized exactly as TRL
tokenized them in training, the tokens that a cluster of sequences shares (an instruction and
a query, a document prompt, or the first words of a masked document) run once per cluster and
their key/value cache serves every member, the rest runs in length-sorted batches, and the
head is summed over each sequence's positions. Too-long pairs lose the end of their document, never the query or the positions
the head reads (:func:`encode_pairs`).

Shared heads and helpers: :func:`token_log_probs` (log-probability of the following token,
the vocabulary projected in chunks; document and query likelihood), the reference-relative
difference of DPO-trained policies (:func:`policy_minus_reference`), and the model loaders
of the families (:func:`load_merged_causal_lm`, :func:`load_policy_and_reference`).

One module past 400 lines, on purpose: tokenizing, prefix caching, batching under the token
budget and the head run in one loop over the model; split, the prefix cache would pass between
modules.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from itertools import chain
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ...text.truncation import fit_document
from ..batching import BATCHES_PER_CHUNK, LOGIT_ROWS, Batching, batching_for
from ..settings import ScoringSettings
from ..loading import load_causal_lm

logger = logging.getLogger(__name__)

DEFAULT_BETA = 0.1  # TRL DPOConfig's default
# Show a progress bar from this many pairs on.
_PROGRESS_MIN_PAIRS = 128

Head = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ScoredSequence:
    """One pair as the model reads it.

    ``ids`` are the token ids; the head reads the final hidden states at positions
    ``first .. stop-1`` (each position also knows the token that follows it).
    """

    ids: list[int]
    first: int
    stop: int


# --------------------------------------------------------------------------------------
# tokenization


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix that all ``sequences`` share."""
    head = sequences[0]
    length = min(len(s) for s in sequences)
    for seq in sequences[1:]:
        k = 0
        while k < length and seq[k] == head[k]:
            k += 1
        length = k
    return length


def token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """``tokenizer(texts)["input_ids"]`` (default special tokens, as TRL tokenizes).

    A fast tokenizer's own backend is called when it neither pads nor truncates (the
    tokenizer's defaults): without the offsets and masks the call computes and converts, it
    is 1.3–1.4× faster (docs/performance.md), and the first text is checked against the tokenizer's call.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if not texts or backend is None or backend.padding is not None or backend.truncation is not None or not hasattr(backend, "encode_batch_fast"):
        return tokenizer(texts)["input_ids"]
    ids = [encoding.ids for encoding in backend.encode_batch_fast(texts)]
    if ids[0] != tokenizer(texts[0])["input_ids"]:
        return tokenizer(texts)["input_ids"]
    return ids


def encode_pairs(tokenizer, texts: list[str], renders: list[Callable[[str], str]], documents: Sequence[str], max_length: int | None) -> list[list[int]]:
    """Batch-tokenize ``texts`` (:func:`token_ids`); a too-long pair loses its document's end
    (:func:`rerank_audit.text.truncation.fit_document`, as in training)."""
    encoded = token_ids(tokenizer, texts)
    return [
        ids if max_length is None or len(ids) <= max_length else _fitted_ids(tokenizer, render, doc, max_length, len(ids))
        for ids, render, doc in zip(encoded, renders, documents)
    ]


def _fitted_ids(tokenizer, render: Callable[[str], str], document: str, max_length: int, length: int) -> list[int]:
    kept = fit_document(tokenizer, render, document, max_length, length)
    if kept is None:
        kept = ""
        logger.warning("prompt without its document has more than max_length %d tokens; scoring it whole", max_length)
    return tokenizer(render(kept))["input_ids"]


# --------------------------------------------------------------------------------------
# the batched engine


def unwrap(model):
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected), else ``model``."""
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency, but scoring plain models must not need it
        return model
    return model.get_base_model() if isinstance(model, PeftModel) else model


def backbone_of(model):
    """The decoder stack (embeddings → final norm) of a causal LM or sequence classifier."""
    inner = unwrap(model)
    return getattr(inner, inner.base_model_prefix)


def supports_prefix_reuse(backbone) -> bool:
    """Whether every attention layer keeps all past keys (sliding-window caches drop some)."""
    from transformers import DynamicCache

    return not any(getattr(layer, "is_sliding", False) for layer in DynamicCache(config=backbone.config).layers)


def _pad_right(rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids and their 0/1 mask, shape [len(rows), width]."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    width = width or int(lengths.max())
    mask = np.arange(width)[None, :] < lengths[:, None]
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    ids[mask] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))  # row-major: each row's tokens in order
    return ids, mask.astype(np.int64)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``. To a GPU from pinned memory without waiting: a blocking copy would
    wait for every kernel queued before it, so the host could not prepare the next batch while the GPU runs."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


KeyValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), [rows, kv heads, positions, head dim]


@dataclass
class _PrefixCache:
    """The cached prefixes of one chunk: ``common`` tokens that all its sequences share, once,
    and each cluster's own rest beyond them, one right-padded row per cluster that has one.

    A cluster without a rest reads row 0 with all its positions masked. Padding slots hold
    zeros, never uninitialised memory (a masked NaN would still poison the attention's
    weighted sum).
    """

    common: int
    common_kv: KeyValues  # [1, ...]; empty when common is 0
    rests: KeyValues  # [clusters with a rest, ..., widest rest, ...]; empty when no cluster has one
    row: dict[int, int]  # cluster -> its row in rests
    rest: dict[int, int]  # cluster -> its rest's length
    read: dict[int, tuple[int, torch.Tensor]] = field(default_factory=dict)  # cluster -> (first position, the head there and after)

    def for_batch(self, clusters: Sequence) -> tuple[int, list[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        """(width, each row's prefix length, per layer the rows' prefix keys and values) of a batch whose rows belong to ``clusters``.

        The layers come from a generator, so the batch's cache holds the only reference to its
        rows' prefix copies (transformers' DynamicCache takes every layer when it is built: the
        copies of all layers exist at once, as the budget counts them, :attr:`TokenCost.prefix_weight_in_memory`);
        ``width`` is the common prefix and the widest rest among the rows.
        """
        rest = max(self.rest.get(g, 0) for g in clusters)
        lengths = [self.common + self.rest.get(g, 0) for g in clusters]

        def layers():
            index = to_device(np.array([self.row.get(g, 0) for g in clusters]), self.rests[0][0].device) if rest else None
            for layer in range(len(self.common_kv or self.rests)):
                parts = []
                if self.common:
                    parts.append([t.expand(len(clusters), -1, -1, -1) for t in self.common_kv[layer]])
                if rest:
                    parts.append([t[index, :, :rest] for t in self.rests[layer]])
                yield tuple(torch.cat(pair, dim=2) if len(pair) > 1 else pair[0] for pair in zip(*parts))

        return self.common + rest, lengths, layers()


def _encode_prefixes(backbone, common_ids: list[int], rests: dict[int, list[int]], batching: Batching, pad_id: int, device,
                     head: Head | None = None, reads: dict[int, tuple[int, list[int]]] | None = None) -> _PrefixCache:
    """The keys and values of ``common_ids`` (once) and of each cluster's ``rests`` after them.

    The rests run in length-sorted batches; each batch's keys and values are copied into
    rows allocated once for the chunk, so no second copy of the chunk's cache is ever made.
    ``reads``: cluster -> (first position, the tokens following it up to the prefix's end) where
    the head reads positions of the prefix; its values there are kept (``_PrefixCache.read``).
    """
    common_kv: KeyValues = []
    if common_ids:
        out = backbone(input_ids=to_device(np.array([common_ids]), device), use_cache=True)
        common_kv = [(layer.keys, layer.values) for layer in out.cache.layers]
    cache = _PrefixCache(len(common_ids), common_kv, [], {}, {})
    clusters = sorted((c for c in rests if rests[c]), key=lambda c: len(rests[c]), reverse=True)
    if not clusters:
        return cache
    cache.row = {c: r for r, c in enumerate(clusters)}
    cache.rest = {c: len(rests[c]) for c in clusters}
    for rows in batching.split([len(rests[c]) for c in clusters], extra=len(common_ids)):
        batch = clusters[rows.start : rows.stop]
        prefix_width, offsets, prefix = cache.for_batch([None] * len(batch))
        out = _forward(backbone, batch_inputs([rests[c] for c in batch], prefix_width, offsets, pad_id), prefix, device, keep_cache=True)
        width = len(rests[batch[0]])
        for layer, part in enumerate(out.cache.layers):
            if not cache.rests:  # allocated on the first batch, the widest: its shapes are known then
                widest = (len(clusters), part.keys.shape[1], width, part.keys.shape[3])
                cache.rests = [tuple(torch.zeros(widest, dtype=part.keys.dtype, device=device) for _ in range(2)) for _ in out.cache.layers]
            keys, values = cache.rests[layer]
            keys[rows.start : rows.stop, :, :width] = part.keys[:, :, cache.common :]
            values[rows.start : rows.stop, :, :width] = part.values[:, :, cache.common :]
        read = [(r, c) for r, c in enumerate(batch) if reads and c in reads]
        if read:  # one head call for the batch's read positions, split by cluster after
            counts = [len(reads[c][1]) for _, c in read]
            row = np.repeat([r for r, _ in read], counts)
            col = np.concatenate([np.arange(reads[c][0], reads[c][0] + n) - cache.common for (_, c), n in zip(read, counts)])
            following = np.concatenate([reads[c][1] for _, c in read])
            heads = head(out.last_hidden_state[to_device(row, device), to_device(col, device)], to_device(following, device))
            for (_, c), part in zip(read, heads.split(counts)):
                cache.read[c] = (reads[c][0], part)
        del out
    return cache


def sum_head_over_positions(
    backbone,
    sequences: list[ScoredSequence],
    head: Head,
    *,
    settings: ScoringSettings,
    prefix_reuse: bool,
    pad_id: int,
    desc: str = "scoring",
) -> np.ndarray:
    """Σ head(hidden state at p, token after p) over p in [first, stop) of each sequence; float64 [len(sequences)].

    With ``prefix_reuse``, the sequences are split into clusters (:func:`prefix_clusters`: those
    of a query, or the masked variants of a document that keep its first words), the token
    prefix a cluster's sequences share runs once, and its key/value cache serves every sequence
    of the cluster (positions inside the prefix that the head reads, their following tokens
    shared, are read once per cluster: :func:`cluster_prefix`); the prefix shared by all
    sequences of a chunk runs once per chunk.
    Sequences of several clusters share a batch: each row sees its own cluster's prefix and
    continues its own positions. The result equals running each full sequence alone, up to
    floating-point error.

    Memory is bounded by construction (:mod:`..batching`): each forward pass holds at most
    the budget's tokens (a row's cached prefix positions weighed by what they cost,
    ``Batching.prefix_weight``), and a chunk caches its clusters' own prefixes in at most
    ``prefix_tokens`` key/value positions, padding included, released before the next chunk.

    Padding-free where the attention allows it (:mod:`.packing`): ``settings.packing``, or auto
    with variable-length attention where no prefix is shared.

    Nothing waits for the device between batches: inputs go from pinned memory without
    blocking and the head's values stay on the device until the end, so on a GPU the host
    prepares the next batch while the current one runs.
    """
    device = next(backbone.parameters()).device
    batching = batching_for(settings, backbone)
    plan = plan_chunks(sequences, batching, prefix_reuse)
    prefix_len, members, cluster = plan.prefix_len, plan.members, plan.cluster
    full_tokens = sum(len(s.ids) for s in sequences)
    logger.info(
        "%s: %d pairs in %d prefix clusters, batches of <= %s, %d tokens (%.0f%% of the full prompts' %d)",
        desc, len(sequences), len(members), batching.describe(), plan.run_tokens, 100 * plan.run_tokens / max(full_tokens, 1), full_tokens,
    )
    show = settings.progress if settings.progress is not None else len(sequences) >= _PROGRESS_MIN_PAIRS
    from .packing import packs, sum_head_packed  # packing builds on this module

    if packs(backbone, settings.packing) and (settings.packing or plan.run_tokens >= full_tokens):
        logger.info("%s: packed, padding-free (%s attention), no prefix reuse", desc, backbone.config._attn_implementation)
        with torch.inference_mode(), tqdm(total=len(sequences), desc=desc, unit="pair", disable=not show) as bar:
            return sum_head_packed(backbone, sequences, head, batching, pad_id, bar)
    firsts = np.array([s.first for s in sequences], dtype=np.int64)
    stops = np.array([s.stop for s in sequences], dtype=np.int64)
    values, owners = [], []  # per batch: the head's values (on the device) and the sequence each belongs to
    with torch.inference_mode(), tqdm(total=len(sequences), desc=desc, unit="pair", disable=not show) as bar:
        for chunk, common in zip(plan.chunks, plan.shared):
            first = sequences[members[chunk[0]][0]].ids
            rests = {c: sequences[members[c][0]].ids[common : prefix_len[c]] for c in chunk if prefix_len[c] > common}
            # the positions of a cluster's prefix that the head reads (cluster_prefix), read once
            starts = {c: int(firsts[members[c]].min()) for c in rests}
            reads = {c: (start, sequences[members[c][0]].ids[start + 1 : prefix_len[c] + 1]) for c, start in starts.items() if start < prefix_len[c]}
            prefixes = _encode_prefixes(backbone, first[:common], rests, batching, pad_id, device, head, reads)
            for c, (start, read) in prefixes.read.items():
                # after[k]: the head summed from position start + k to the prefix's end (float64, as the sums below); a
                # member reads [first, stop) of it
                after = torch.cat([read.double().flip(0).cumsum(0).flip(0), read.new_zeros(1, dtype=torch.float64)])
                span = [to_device(np.clip(ends[members[c]], start, prefix_len[c]) - start, device) for ends in (firsts, stops)]
                values.append(after[span[0]] - after[span[1]])
                owners.append(np.array(members[c]))
            # Length bucketing: similar suffix lengths share a batch.
            order = sorted(
                (i for c in chunk for i in members[c]),
                key=lambda i: len(sequences[i].ids) - prefix_len[cluster[i]],
                reverse=True,
            )
            suffixes = [len(sequences[i].ids) - prefix_len[cluster[i]] for i in order]
            for rows in batching.split(suffixes, extra=[prefix_len[cluster[i]] for i in order]):
                batch = np.array(order[rows.start : rows.stop])
                width, offsets, prefix = prefixes.for_batch([cluster[i] for i in batch])
                inputs = batch_inputs([sequences[i].ids[p:] for i, p in zip(batch, offsets)], width, offsets, pad_id)
                hidden = _forward(backbone, inputs, prefix, device).last_hidden_state
                reads_from = np.maximum(firsts[batch] - np.asarray(offsets), 0)  # a position inside the prefix was read with it
                reads_to = np.maximum(stops[batch] - np.asarray(offsets), reads_from)
                row, col, following = read_positions(inputs.ids, reads_from, reads_to, pad_id)
                values.append(head(hidden[to_device(row, device), to_device(col, device)], to_device(following, device)))
                owners.append(batch[row])
                bar.update(len(batch))
                del hidden
            del prefixes  # before the next chunk's are built
    scores = np.zeros(len(sequences), dtype=np.float64)
    if values:
        np.add.at(scores, np.concatenate(owners), torch.cat([v.double() for v in values]).cpu().numpy())
    return scores


@dataclass(frozen=True)
class ChunkPlan:
    """How :func:`sum_head_over_positions` runs a call: ``cluster`` (each sequence's prefix cluster), ``members``
    (cluster -> its sequences), ``prefix_len`` (cluster -> cached prefix tokens of its sequences), ``chunks`` (lists
    of clusters, scored in turn), ``shared`` (per chunk, the prefix all its sequences share, run once) and
    ``run_tokens`` (tokens run, padding not counted)."""

    cluster: list[int]
    members: dict[int, list[int]]
    prefix_len: dict[int, int]
    chunks: list[list[int]]
    shared: list[int]
    run_tokens: int


# The most sequences one prefix cluster spans (the planner's work grows with it): more than the
# masked variants of a query's explained documents, or the documents of one query's re-ranked head.
CLUSTER_SPAN = 1024


def cluster_prefix(shared: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The prefix a cluster caches, from the tokens its sequences all share and their least first read position.

    Up to the first read position, the whole shared prefix. Beyond it, the head reads some of
    the prefix's positions, which is right only where each one's following token is shared too:
    one token less, and the cluster reads those positions once (:func:`sum_head_over_positions`)."""
    return np.minimum(shared, np.maximum(first, shared - 1))


def prefix_clusters(sequences: Sequence[ScoredSequence], common: int) -> list[tuple[list[int], int]]:
    """The sequences split into clusters that each run their shared prefix once: (members, prefix length).

    Sequences sorted by their ids put those sharing a prefix next to each other, and a run of
    neighbours shares the smallest prefix between them (:func:`cluster_prefix`). A cluster costs
    its prefix beyond ``common`` (the tokens every sequence shares, run once per chunk) once, and
    each member's tokens after the prefix; the partition of the sorted order into runs that costs
    the fewest tokens is found by dynamic programming over runs of at most ``CLUSTER_SPAN``. A
    query's sequences form one cluster when only the query is shared; where masked variants of a
    document keep its first words, they split into clusters along them. A cluster of one caches
    nothing of its own.
    """
    if not sequences:
        return []
    order = sorted(range(len(sequences)), key=lambda i: sequences[i].ids)
    ids = [sequences[i].ids for i in order]
    lengths = np.array([len(s) for s in ids], dtype=np.int64)
    firsts = np.array([sequences[i].first for i in order], dtype=np.int64)
    beyond = int(lengths.max()) + 1  # more than any two share: a run of one has no neighbour to bound it
    neighbours = np.array([common_prefix_length([a, b]) for a, b in zip(ids, ids[1:])], dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(lengths)])
    best = np.zeros(len(order) + 1)  # best[j]: the cheapest partition of the first j sorted sequences
    start = np.zeros(len(order), dtype=np.int64)
    for j in range(len(order)):
        lo = max(0, j - CLUSTER_SPAN + 1)
        # the run i..j shares the least of its neighbours' shared prefixes; its least first read position
        shared = np.minimum.accumulate(np.append(neighbours[lo:j], beyond)[::-1])[::-1]
        first = np.minimum.accumulate(firsts[lo : j + 1][::-1])[::-1]
        prefix = np.maximum(cluster_prefix(shared, first), common)
        size = j + 1 - np.arange(lo, j + 1)
        cost = best[lo : j + 1] + (prefix - common) + (before[j + 1] - before[lo : j + 1]) - size * prefix
        cost[-1] = best[j] + lengths[j] - common  # alone: only the common prefix
        k = len(cost) - 1 - int(np.argmin(cost[::-1]))  # on a tie the shortest run: nothing gained, nothing cached
        best[j + 1], start[j] = cost[k], lo + k
    clusters, j = [], len(order)
    while j > 0:
        i = int(start[j - 1])
        prefix = int(cluster_prefix(neighbours[i : j - 1].min(), firsts[i:j].min())) if j - i > 1 else common
        clusters.append(([order[k] for k in range(i, j)], max(prefix, common)))
        j = i
    return clusters[::-1]


def plan_chunks(sequences: list[ScoredSequence], batching: Batching, prefix_reuse: bool) -> ChunkPlan:
    """The sequences' prefix clusters and the chunks they are scored in (see :func:`sum_head_over_positions`)."""
    common = 0
    if prefix_reuse and len(sequences) > 1:
        common = min(common_prefix_length([s.ids for s in sequences]), min(s.first for s in sequences))
    clusters = prefix_clusters(sequences, common) if prefix_reuse else [([i], 0) for i in range(len(sequences))]
    members = {c: idx for c, (idx, _) in enumerate(clusters)}
    prefix_len = {c: length for c, (_, length) in enumerate(clusters)}
    cluster = [0] * len(sequences)
    for c, idx in members.items():
        for i in idx:
            cluster[i] = c

    # Chunks of whole clusters, ordered by prefix length so that a chunk's prefixes pad little.
    # A chunk holds about BATCHES_PER_CHUNK batches (counted in sequences, or in the budget's tokens), and
    # its clusters' own prefixes, each padded to the widest, at most prefix_tokens positions.
    unit = batching.rows if batching.rows is not None else batching.tokens
    chunks, chunk, count, cached = [], [], 0, 0
    for c in sorted(members, key=prefix_len.get):
        own = prefix_len[c]
        if chunk and own and batching.prefix_tokens is not None and (cached + 1) * own > batching.prefix_tokens:
            chunks.append(chunk)
            chunk, count, cached = [], 0, 0
        chunk.append(c)
        cached += own > 0
        count += len(members[c]) if batching.rows is not None else sum(batching.cost(len(sequences[i].ids) - own, own) for i in members[c])
        if count >= BATCHES_PER_CHUNK * unit:
            chunks.append(chunk)
            chunk, count, cached = [], 0, 0
    if chunk:
        chunks.append(chunk)

    # Within a chunk, the prefix all its sequences share (the prompt template) runs once too,
    # and a cluster of one sequence reuses it.
    shared = []
    for chunk in chunks:
        idx = [i for c in chunk for i in members[c]]
        common = 0
        if prefix_reuse and len(idx) > 1:
            common = min(common_prefix_length([sequences[i].ids for i in idx]), min(sequences[i].first for i in idx))
        shared.append(common)
        for c in chunk:
            prefix_len[c] = max(prefix_len[c], common)
    run_tokens = sum(common + sum(prefix_len[c] - common for c in chunk) for chunk, common in zip(chunks, shared))
    run_tokens += sum(len(s.ids) - prefix_len[c] for s, c in zip(sequences, cluster))
    return ChunkPlan(cluster, members, prefix_len, chunks, shared, run_tokens)


@dataclass(frozen=True)
class BatchInputs:
    """A batch as the backbone reads it, on the host: right-padded suffix ``ids`` [rows, width], the attention
    ``mask`` over cached prefix and suffix [rows, prefix width + width], and each token's ``positions``."""

    ids: np.ndarray
    mask: np.ndarray
    positions: np.ndarray
    prefix_width: int


def batch_inputs(suffixes: Sequence[Sequence[int]], width: int, offsets: Sequence[int], pad_id: int) -> BatchInputs:
    """Row r: ``suffixes[r]`` continuing a cached prefix of ``offsets[r]`` tokens, left-aligned in ``width`` positions
    and right-padded (masked). Suffixes are right-padded, so padding only ever follows the tokens that matter."""
    ids, suffix_mask = _pad_right(suffixes, pad_id)
    offsets = np.asarray(offsets, dtype=np.int64)
    prefix_mask = (np.arange(width)[None, :] < offsets[:, None]).astype(np.int64)
    positions = offsets[:, None] + np.arange(ids.shape[1])[None, :]
    return BatchInputs(ids, np.concatenate([prefix_mask, suffix_mask], axis=1), positions, width)


def read_positions(ids: np.ndarray, firsts: np.ndarray, stops: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, following token) of every position the head reads in a batch of right-padded ``ids``.

    Row r's positions are columns ``firsts[r] .. stops[r]-1`` (in the batch's own columns);
    the following token is the next column's, or ``pad_id`` after a row's last token.
    """
    counts = stops - firsts
    row = np.repeat(np.arange(len(ids)), counts)
    col = np.repeat(firsts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    following = np.pad(ids, ((0, 0), (0, 1)), constant_values=pad_id)[row, col + 1]
    return row, col, following


def _forward(backbone, inputs: BatchInputs, prefix: Iterable, device, keep_cache: bool = False):
    """The backbone's output on ``inputs``; ``prefix``: per layer the rows' cached prefix keys and values
    (``inputs.prefix_width`` positions; 0: no prefix). With ``keep_cache`` the output's cache holds prefix and
    suffix keys/values."""
    from transformers import DynamicCache

    cache = DynamicCache(ddp_cache_data=prefix, config=backbone.config) if inputs.prefix_width else None
    return backbone(
        input_ids=to_device(inputs.ids, device),
        attention_mask=to_device(inputs.mask, device),
        position_ids=to_device(inputs.positions, device),
        cache=cache,
        use_cache=keep_cache or cache is not None,
    )


def final_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits (float32) of final hidden states, as the causal LM's forward computes them."""
    inner = unwrap(model)
    logits = inner.get_output_embeddings()(hidden).float()
    softcap = getattr(inner.config.get_text_config(), "final_logit_softcapping", None)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return logits


def check_logits_path(model, backbone, probe_ids: list[int]) -> None:
    """Fail early for architectures whose forward does more than lm_head(backbone(x)) (+ softcapping)."""
    with torch.inference_mode():
        ids = torch.tensor([probe_ids[:16]], device=next(backbone.parameters()).device)
        expected = model(input_ids=ids).logits[0, -1].float()
        ours = final_logits(model, backbone(input_ids=ids).last_hidden_state)[0, -1]
    tolerance = 1e-3 if expected.dtype == torch.float32 and ours.dtype == torch.float32 else 0.1
    if not torch.allclose(expected, ours, atol=tolerance * max(1.0, expected.abs().max().item()), rtol=0):
        raise NotImplementedError(
            f"{type(unwrap(model)).__name__}: its logits are not lm_head(hidden states); the scorers cannot score it"
        )


def check_pairs(queries: Sequence[str], documents: Sequence[str]) -> None:
    if len(queries) != len(documents):
        raise ValueError(f"{len(queries)} queries but {len(documents)} documents")


def check_reference(policy, reference) -> None:
    if reference is None and not hasattr(policy, "disable_adapter"):
        raise ValueError("without a reference model the policy must be a PEFT model (its adapter disabled is the reference)")


def policy_minus_reference(policy, reference, score: Callable[[object], np.ndarray]) -> np.ndarray:
    """``score(policy) − score(reference)``, float64.

    ``reference`` is a separate model, or ``None``: then the reference is ``policy`` (a PEFT
    model) with its adapter disabled, so no second copy of the base weights is held.
    """
    with_policy = score(policy)
    if reference is not None:
        return with_policy - score(reference)
    with policy.disable_adapter():
        return with_policy - score(policy)


def token_log_probs(model, hidden: torch.Tensor, following: torch.Tensor) -> torch.Tensor:
    """log P(following[i] | hidden[i]) under ``model``, float32 [len(following)].

    ``hidden``: final hidden states [n, hidden size]; ``following``: the token ids they
    predict [n]. The vocabulary is projected ``LOGIT_ROWS`` rows at a time, so n can be
    every completion token of a batch without holding n × vocabulary logits at once.
    """
    out = torch.empty(len(following), dtype=torch.float32, device=hidden.device)
    for start in range(0, len(following), LOGIT_ROWS):
        logits = final_logits(model, hidden[start : start + LOGIT_ROWS])
        target = following[start : start + LOGIT_ROWS, None]
        out[start : start + LOGIT_ROWS] = logits.gather(1, target)[:, 0] - torch.logsumexp(logits, dim=-1)
    return out


# --------------------------------------------------------------------------------------
# loading the models a family scores with


def is_adapter_folder(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a PEFT adapter rather than full weights."""
    return (Path(model_dir) / "adapter_config.json").is_file()


def adapter_base(model_dir: Path) -> str:
    """The base model an adapter folder records (``base_model_name_or_path``)."""
    return json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]


def with_adapter(model, adapter_dir: Path, device):
    """``model`` with the PEFT adapter of ``adapter_dir`` on top, on ``device``, in eval mode."""
    from peft import PeftModel

    logger.info("loading adapter %s", adapter_dir)
    return PeftModel.from_pretrained(model, str(adapter_dir)).to(device).eval()


def load_merged_causal_lm(model_dir: Path, base_model, device, dtype, attn_implementation: str | None = None):
    """The causal LM of ``model_dir``: full weights, or its adapter merged into ``base_model`` (no LoRA detour)."""
    if is_adapter_folder(model_dir):
        return with_adapter(load_causal_lm(base_model, device, dtype, attn_implementation), model_dir, device).merge_and_unload()
    return load_causal_lm(model_dir, device, dtype, attn_implementation)


def load_policy_and_reference(method: str, model_dir: Path, base_model, device, dtype, attn_implementation: str | None = None):
    """(policy, reference) of a DPO-trained ``method``; reference ``None``: the policy with its adapter disabled.

    An adapter is not merged, so that disabling it gives the reference without a second copy
    of the base weights; a full fine-tune needs ``base_model`` as its reference.
    """
    if is_adapter_folder(model_dir):
        return with_adapter(load_causal_lm(base_model, device, dtype, attn_implementation), model_dir, device), None
    if base_model is None:
        raise ValueError(f"{model_dir}: a fully fine-tuned {method} model needs base_model as its reference")
    return load_causal_lm(model_dir, device, dtype, attn_implementation), load_causal_lm(base_model, device, dtype, attn_implementation)
