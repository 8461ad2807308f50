"""The three ways a trained model turns (query, document) pairs into relevance scores.

- :class:`YesNoScorer` (zeroshot, sft): the log-odds of the answer after
  ``prompts.pointwise_prompt``: logsumexp of the logits of every one-token case/space variant
  of yes minus the same for no (:func:`answer_token_sets`). For ``dpo`` the same log-odds
  relative to the reference model: β·(log-odds_π − log-odds_ref).
- :class:`ImplicitRewardScorer` (dpo_pairs): the DPO implicit reward per document token,
  β·mean over the document's tokens of (log π − log π_ref), the document being the
  completion of ``prompts.document_prompt``.
- :class:`RewardHeadScorer` (reward): the scalar head of a Bradley–Terry reward model, read at
  the EOS that closes the document.
- Reference-relative scores (``dpo``, ``dpo_pairs``) run the pairs twice through one engine,
  with the policy and with the reference (:func:`_policy_minus_reference`): the reference is
  a separate base model, or the policy itself with its LoRA adapter disabled.

All three implement :class:`~rerank_audit.models.scorer.Scorer` and share one batched
engine (:func:`_sum_head_over_positions`): pairs are tokenized exactly as TRL tokenized
them in training, the tokens that every candidate of a query shares (instruction + query)
are run once per query and their key/value cache is reused for all candidates, the rest is
run in length-sorted batches, and a small *head* turns the final hidden states at the
positions that matter into the score. Too-long pairs lose the end of their document,
never the query or the answer position.

:func:`load_scorer` builds the right scorer from a model folder (full fine-tune or PEFT
adapter; adapters are merged, except where the disabled adapter is the reference).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import prompts
from .loading import load_causal_lm, load_sequence_classifier, load_tokenizer, pick_device, resolve_dtype

logger = logging.getLogger(__name__)

YES_NO_METHODS = ("zeroshot", "sft", "dpo")
IMPLICIT_REWARD_METHODS = ("dpo_pairs",)
REWARD_HEAD_METHODS = ("reward",)
METHODS = YES_NO_METHODS + IMPLICIT_REWARD_METHODS + REWARD_HEAD_METHODS
# Scored as β·(policy − reference), DPO's implicit reward.
REFERENCE_RELATIVE_METHODS = ("dpo", "dpo_pairs")

DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_LENGTH = 512
DEFAULT_BETA = 0.1  # TRL DPOConfig's default
# Queries whose prefixes are cached together: enough pairs for this many batches. Bounds the
# memory of the prefix cache while leaving room to sort pairs by length.
_BATCHES_PER_CHUNK = 8
# Token positions per vocabulary projection in ImplicitRewardScorer: bounds the logits' memory.
_LOGIT_ROWS = 1024
# Show a progress bar from this many batches on.
_PROGRESS_MIN_BATCHES = 8

Head = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Sequence:
    """One pair as the model reads it.

    ``ids`` are the token ids; the head reads the final hidden states at positions
    ``first .. stop-1`` (each position also knows the token that follows it).
    """

    ids: list[int]
    first: int
    stop: int


# --------------------------------------------------------------------------------------
# tokenization


def _common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix that all ``sequences`` share."""
    head = sequences[0]
    length = min(len(s) for s in sequences)
    for seq in sequences[1:]:
        k = 0
        while k < length and seq[k] == head[k]:
            k += 1
        length = k
    return length


def _fit_document(tokenizer, render: Callable[[str], str], document: str, max_length: int | None, ids: list[int]) -> list[int]:
    """Token ids of ``render(document)`` with the document's end cut so that they fit ``max_length``.

    ``ids`` is the untruncated encoding. Only the document shrinks (at a token boundary of
    the document alone); whatever ``render`` puts around it is kept whole.
    """
    if max_length is None or len(ids) <= max_length:
        return ids
    offsets = tokenizer(document, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    keep = len(offsets) - (len(ids) - max_length)
    while keep > 0:
        ids = tokenizer(render(document[: offsets[keep - 1][1]]))["input_ids"]
        if len(ids) <= max_length:
            return ids
        keep -= len(ids) - max_length  # tokens can merge differently at the cut; shrink again
    ids = tokenizer(render(""))["input_ids"]
    logger.warning("prompt without its document has %d tokens > max_length %d; scoring it whole", len(ids), max_length)
    return ids


def _encode(tokenizer, texts: list[str], renders: list[Callable[[str], str]], documents: Sequence[str], max_length: int | None) -> list[list[int]]:
    """Batch-tokenize ``texts`` (default special tokens, as TRL does), truncating documents where needed."""
    encoded = tokenizer(texts)["input_ids"]
    return [_fit_document(tokenizer, render, doc, max_length, ids) for ids, render, doc in zip(encoded, renders, documents)]


def answer_token_sets(tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of the one-token variants of yes and of no (``prompts.answer_tokens``); each non-empty, disjoint."""
    prompts.pointwise_completions(tokenizer)  # raises the clear error when a word has no one-token variant
    yes, no = (list(dict.fromkeys(variants.values())) for variants in prompts.answer_tokens(tokenizer))
    return yes, no


# --------------------------------------------------------------------------------------
# the batched engine


def _unwrap(model):
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected), else ``model``."""
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency, but scoring plain models must not need it
        return model
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _backbone(model):
    """The decoder stack (embeddings → final norm) of a causal LM or sequence classifier."""
    inner = _unwrap(model)
    return getattr(inner, inner.base_model_prefix)


def _supports_prefix_reuse(backbone) -> bool:
    """Whether every attention layer keeps all past keys (sliding-window caches drop some)."""
    from transformers import DynamicCache

    return not any(getattr(layer, "is_sliding", False) for layer in DynamicCache(config=backbone.config).layers)


def _pad_right(rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids and their 0/1 mask, shape [len(rows), width]."""
    width = width or max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return ids, mask


def _encode_prefixes(
    backbone, prefixes: list[list[int]], batch_size: int, pad_id: int, device, shared: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values) of ``prefixes``, shape [len(prefixes), heads, max prefix length, head dim].

    The first ``shared`` tokens, common to all prefixes, run once. Prefixes are
    right-padded; the key/value slots past a prefix's end hold padding that the suffix pass
    masks out.
    """
    base: list[tuple[torch.Tensor, torch.Tensor]] = []
    if shared:
        out = backbone(input_ids=torch.tensor([prefixes[0][:shared]], device=device), use_cache=True)
        base = [(layer.keys, layer.values) for layer in out.cache.layers]
    rests = [p[shared:] for p in prefixes]
    if not any(rests):
        return [(k.expand(len(prefixes), -1, -1, -1), v.expand(len(prefixes), -1, -1, -1)) for k, v in base]
    width = max(len(r) for r in rests)
    parts = []
    for start in range(0, len(rests), batch_size):
        batch = rests[start : start + batch_size]
        # padded to one width so that the batches concatenate; slots past a prefix are masked later
        rows = [r + [pad_id] * (width - len(r)) for r in batch]
        out = _forward(backbone, rows, [shared] * len(batch), [0] * len(batch), base, pad_id, device, keep_cache=True)
        parts.append([(layer.keys, layer.values) for layer in out.cache.layers])
    return [
        (torch.cat([p[layer][0] for p in parts]), torch.cat([p[layer][1] for p in parts])) for layer in range(len(parts[0]))
    ]


def _sum_head_over_positions(
    backbone,
    sequences: list[_Sequence],
    groups: list[int],
    head: Head,
    *,
    batch_size: int,
    prefix_reuse: bool,
    pad_id: int,
    progress: bool | None = None,
    desc: str = "scoring",
) -> np.ndarray:
    """Σ head(hidden state at p, token after p) over p in [first, stop) of each sequence; float64 [len(sequences)].

    ``groups[i]`` names the query of sequence i. With ``prefix_reuse``, the longest token
    prefix shared by a group's sequences (capped so that every position the head reads is
    recomputed) runs once, and its key/value cache serves every sequence of the group; the
    prefix shared by all sequences of a chunk runs once per chunk.
    Sequences of several groups share a batch: each row sees its own group's prefix and
    continues its own positions. The result equals running each full sequence alone, up to
    floating-point error.
    """
    device = next(backbone.parameters()).device
    scores = np.zeros(len(sequences), dtype=np.float64)
    members: dict[int, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    prefix_len = {}
    for group, idx in members.items():
        if prefix_reuse and len(idx) > 1:
            shared = _common_prefix_length([sequences[i].ids for i in idx])
            prefix_len[group] = min(shared, min(sequences[i].first for i in idx))
        else:
            prefix_len[group] = 0

    # Chunks of whole groups, ordered by prefix length so that a chunk's prefixes pad little.
    chunks, chunk, count = [], [], 0
    for group in sorted(members, key=prefix_len.get):
        chunk.append(group)
        count += len(members[group])
        if count >= _BATCHES_PER_CHUNK * batch_size:
            chunks.append(chunk)
            chunk, count = [], 0
    if chunk:
        chunks.append(chunk)

    # Within a chunk, the prefix all its sequences share (the prompt template) runs once too,
    # and a group of one sequence reuses it.
    shared = []
    for chunk in chunks:
        idx = [i for g in chunk for i in members[g]]
        common = 0
        if prefix_reuse and len(idx) > 1:
            common = min(_common_prefix_length([sequences[i].ids for i in idx]), min(sequences[i].first for i in idx))
        shared.append(common)
        for g in chunk:
            prefix_len[g] = max(prefix_len[g], common)

    full_tokens = sum(len(s.ids) for s in sequences)
    run_tokens = sum(common + sum(prefix_len[g] - common for g in chunk) for chunk, common in zip(chunks, shared))
    run_tokens += sum(len(s.ids) - prefix_len[g] for s, g in zip(sequences, groups))
    logger.info(
        "%s: %d pairs of %d queries, %d tokens (%.0f%% of the full prompts' %d)",
        desc, len(sequences), len(members), run_tokens, 100 * run_tokens / max(full_tokens, 1), full_tokens,
    )
    show = progress if progress is not None else len(sequences) >= _PROGRESS_MIN_BATCHES * batch_size
    with torch.inference_mode(), tqdm(total=len(sequences), desc=desc, unit="pair", disable=not show) as bar:
        for chunk, common in zip(chunks, shared):
            cached = [g for g in chunk if prefix_len[g] > 0]
            cache_row = {g: r for r, g in enumerate(cached)}
            prefix_kv = []
            if cached:
                prefixes = [sequences[members[g][0]].ids[: prefix_len[g]] for g in cached]
                prefix_kv = _encode_prefixes(backbone, prefixes, batch_size, pad_id, device, shared=common)
            # Length bucketing: similar suffix lengths share a batch.
            order = sorted(
                (i for g in chunk for i in members[g]),
                key=lambda i: len(sequences[i].ids) - prefix_len[groups[i]],
                reverse=True,
            )
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                offsets = [prefix_len[groups[i]] for i in batch]
                hidden = _forward(
                    backbone,
                    [sequences[i].ids[p:] for i, p in zip(batch, offsets)],
                    offsets,
                    [cache_row.get(groups[i], 0) for i in batch],
                    prefix_kv,
                    pad_id,
                    device,
                ).last_hidden_state
                rows, cols, owners, following = [], [], [], []
                for r, (i, p) in enumerate(zip(batch, offsets)):
                    seq = sequences[i]
                    for pos in range(seq.first, seq.stop):
                        rows.append(r)
                        cols.append(pos - p)
                        owners.append(i)
                        following.append(seq.ids[pos + 1] if pos + 1 < len(seq.ids) else pad_id)
                values = head(
                    hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)],
                    torch.tensor(following, device=device),
                )
                np.add.at(scores, owners, values.double().cpu().numpy())
                bar.update(len(batch))
    return scores


def _forward(backbone, suffixes, offsets, cache_rows, prefix_kv, pad_id, device, keep_cache: bool = False):
    """The backbone's output on ``suffixes``, row r continuing a cached prefix of ``offsets[r]`` tokens.

    The prefix is row ``cache_rows[r]`` of ``prefix_kv`` (offset 0: no prefix). Suffixes
    are right-padded, so padding only ever follows the tokens that matter. With
    ``keep_cache`` the output's cache holds prefix and suffix keys/values.
    """
    from transformers import DynamicCache

    ids, suffix_mask = _pad_right(suffixes, pad_id)
    width = max(offsets)
    mask = np.zeros((len(suffixes), width + ids.shape[1]), dtype=np.int64)
    for r, p in enumerate(offsets):
        mask[r, :p] = 1
    mask[:, width:] = suffix_mask
    positions = np.asarray(offsets)[:, None] + np.arange(ids.shape[1])[None, :]
    cache = None
    if width > 0:
        index = torch.tensor(cache_rows, device=device)
        cache = DynamicCache(
            ddp_cache_data=[(k[index, :, :width], v[index, :, :width]) for k, v in prefix_kv], config=backbone.config
        )
    return backbone(
        input_ids=torch.from_numpy(ids).to(device),
        attention_mask=torch.from_numpy(mask).to(device),
        position_ids=torch.from_numpy(positions).to(device),
        cache=cache,
        use_cache=keep_cache or cache is not None,
    )


def _final_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits (float32) of final hidden states, as the causal LM's forward computes them."""
    inner = _unwrap(model)
    logits = inner.get_output_embeddings()(hidden).float()
    softcap = getattr(inner.config.get_text_config(), "final_logit_softcapping", None)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return logits


def _check_logits_path(model, backbone, probe_ids: list[int]) -> None:
    """Fail early for architectures whose forward does more than lm_head(backbone(x)) (+ softcapping)."""
    with torch.inference_mode():
        ids = torch.tensor([probe_ids[:16]], device=next(backbone.parameters()).device)
        expected = model(input_ids=ids).logits[0, -1].float()
        ours = _final_logits(model, backbone(input_ids=ids).last_hidden_state)[0, -1]
    tolerance = 1e-3 if expected.dtype == torch.float32 and ours.dtype == torch.float32 else 0.1
    if not torch.allclose(expected, ours, atol=tolerance * max(1.0, expected.abs().max().item()), rtol=0):
        raise NotImplementedError(
            f"{type(_unwrap(model)).__name__}: its logits are not lm_head(hidden states); the scorers cannot score it"
        )


def _groups(queries: Sequence[str]) -> list[int]:
    """Index of each query's first occurrence: pairs with the same query share a group."""
    first: dict[str, int] = {}
    return [first.setdefault(q, len(first)) for q in queries]


def _check_pairs(queries: Sequence[str], documents: Sequence[str]) -> None:
    if len(queries) != len(documents):
        raise ValueError(f"{len(queries)} queries but {len(documents)} documents")


def _check_reference(policy, reference) -> None:
    if reference is None and not hasattr(policy, "disable_adapter"):
        raise ValueError("without a reference model the policy must be a PEFT model (its adapter disabled is the reference)")


def _policy_minus_reference(policy, reference, score: Callable[[object], np.ndarray]) -> np.ndarray:
    """``score(policy) − score(reference)``, float64.

    ``reference`` is a separate model, or ``None``: then the reference is ``policy`` (a PEFT
    model) with its adapter disabled, so no second copy of the base weights is held.
    """
    with_policy = score(policy)
    if reference is not None:
        return with_policy - score(reference)
    with policy.disable_adapter():
        return with_policy - score(policy)


def _answer_log_odds_head(model, yes_ids: list[int], no_ids: list[int]) -> Head:
    """Head: logsumexp(logits of ``yes_ids``) − logsumexp(logits of ``no_ids``) per position.

    The logits of the answer ids are computed in float32 from the final hidden state (bf16
    models do not round scores into ties), with the model's final-logit softcapping.
    """
    inner = _unwrap(model)
    lm_head = inner.get_output_embeddings()
    if hasattr(lm_head, "base_layer"):  # its answer rows below would miss the adapter
        raise NotImplementedError("the yes/no scorers cannot read an adapter on the output layer; train without lm_head in target_modules")
    rows = torch.tensor(yes_ids + no_ids, device=lm_head.weight.device)
    weight = lm_head.weight.detach()[rows].float()
    bias = lm_head.bias.detach()[rows].float() if getattr(lm_head, "bias", None) is not None else None
    softcap = getattr(inner.config.get_text_config(), "final_logit_softcapping", None)
    n_yes = len(yes_ids)

    def log_odds(hidden: torch.Tensor, _following: torch.Tensor) -> torch.Tensor:
        logits = F.linear(hidden.float(), weight, bias)
        if softcap:
            logits = softcap * torch.tanh(logits / softcap)
        return torch.logsumexp(logits[:, :n_yes], dim=-1) - torch.logsumexp(logits[:, n_yes:], dim=-1)

    return log_odds


# --------------------------------------------------------------------------------------
# scorers


class YesNoScorer:
    """Score = the log-odds of yes after ``prompts.pointwise_prompt(query, document)``.

    Log-odds = logsumexp(logits of the yes ids) − logsumexp(logits of the no ids) at the
    answer position (:func:`answer_token_sets`: every one-token case/space variant), in
    float32. ``model`` is a causal LM (a PEFT model is scored with its adapter active).

    With ``beta`` (the ``dpo`` method) the score is relative to the reference model, as DPO
    shapes it: β·(log-odds under ``model`` − log-odds under ``reference``); ``reference``
    ``None`` means ``model`` (a PEFT model) with its adapter disabled.
    """

    def __init__(self, model, tokenizer, *, reference=None, beta: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_length: int | None = DEFAULT_MAX_LENGTH, prefix_reuse: bool = True, progress: bool | None = None):
        if beta is not None:
            _check_reference(model, reference)
        self.model, self.reference, self.beta, self.tokenizer = model, reference, beta, tokenizer
        self.batch_size, self.max_length, self.progress = batch_size, max_length, progress
        self.yes_ids, self.no_ids = answer_token_sets(tokenizer)
        self.prefix_reuse = prefix_reuse and _supports_prefix_reuse(_backbone(model))
        self._heads = {id(m): _answer_log_odds_head(m, self.yes_ids, self.no_ids) for m in (model, reference) if m is not None}
        _check_logits_path(model, _backbone(model), self.prompt_ids(["query"], ["document"])[0])

    def prompt_ids(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """The token ids each pair is scored on (document truncated to fit ``max_length``)."""
        _check_pairs(queries, documents)
        renders = [lambda d, q=q: prompts.pointwise_prompt(self.tokenizer, q, d) for q in queries]
        texts = [render(d) for render, d in zip(renders, documents)]
        return _encode(self.tokenizer, texts, renders, documents, self.max_length)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Log-odds of yes per pair (β·policy−reference difference with ``beta``), float64 [len(queries)]."""
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float64)
        sequences = [_Sequence(ids, len(ids) - 1, len(ids)) for ids in self.prompt_ids(queries, documents)]
        groups = _groups(queries)

        def log_odds(model) -> np.ndarray:
            # the adapter-disabled reference reads the policy's (un-adapted) output rows
            return _sum_head_over_positions(
                _backbone(model), sequences, groups, self._heads[id(model)], batch_size=self.batch_size,
                prefix_reuse=self.prefix_reuse, pad_id=self.tokenizer.pad_token_id, progress=self.progress,
                desc="yes/no reference scores" if model is self.reference else "yes/no scores",
            )

        if self.beta is None:
            return log_odds(self.model)
        return self.beta * _policy_minus_reference(self.model, self.reference, log_odds)


class ImplicitRewardScorer:
    """Score = β·mean over the document's tokens of (log π(t|…) − log π_ref(t|…)).

    The DPO implicit reward per completion token. TRL's DPO loss sums over the tokens; the
    mean keeps a document's length (and a deletion metric's removed words) from moving the
    score by itself. The sequence is tokenized as TRL's DPOTrainer does:
    ``document_prompt(query) + document + eos``, the completion (document + eos) starting
    where its tokens leave the prompt's. ``policy`` is the trained causal LM; ``reference``
    the base model, or ``None`` when ``policy`` is a PEFT model whose reference is itself
    with the adapter disabled (no second copy in memory).
    """

    def __init__(self, policy, tokenizer, *, reference=None, beta: float = DEFAULT_BETA, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_length: int | None = DEFAULT_MAX_LENGTH, prefix_reuse: bool = True, progress: bool | None = None):
        _check_reference(policy, reference)
        self.policy, self.reference, self.tokenizer = policy, reference, tokenizer
        self.beta, self.batch_size, self.max_length, self.progress = beta, batch_size, max_length, progress
        self.prefix_reuse = prefix_reuse and _supports_prefix_reuse(_backbone(policy))
        probe = self._sequences(["query"], ["document"])[0].ids
        _check_logits_path(policy, _backbone(policy), probe)

    def _sequences(self, queries: Sequence[str], documents: Sequence[str]) -> list[_Sequence]:
        _check_pairs(queries, documents)
        eos = self.tokenizer.eos_token or ""
        prompt_of = {q: prompts.document_prompt(self.tokenizer, q) for q in dict.fromkeys(queries)}
        prompt_ids = {q: self.tokenizer(p)["input_ids"] for q, p in prompt_of.items()}
        renders = [lambda d, p=prompt_of[q]: p + d + eos for q in queries]
        texts = [render(d) for render, d in zip(renders, documents)]
        encoded = _encode(self.tokenizer, texts, renders, documents, self.max_length)
        sequences = []
        for q, ids in zip(queries, encoded):
            start = _common_prefix_length([prompt_ids[q], ids])  # first completion token
            sequences.append(_Sequence(ids, max(start - 1, 0), len(ids) - 1))
        return sequences

    def prompt_ids(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """The token ids each pair is scored on (document truncated to fit ``max_length``)."""
        return [s.ids for s in self._sequences(queries, documents)]

    def _mean_log_probs(self, model, sequences: list[_Sequence], groups: list[int]) -> np.ndarray:
        """log π(t|…) of ``model`` averaged over each sequence's completion tokens, float64."""

        def token_log_probs(hidden: torch.Tensor, following: torch.Tensor) -> torch.Tensor:
            out = torch.empty(len(following), dtype=torch.float32, device=hidden.device)
            for start in range(0, len(following), _LOGIT_ROWS):
                logits = _final_logits(model, hidden[start : start + _LOGIT_ROWS])
                target = following[start : start + _LOGIT_ROWS, None]
                out[start : start + _LOGIT_ROWS] = logits.gather(1, target)[:, 0] - torch.logsumexp(logits, dim=-1)
            return out

        sums = _sum_head_over_positions(
            _backbone(model), sequences, groups, token_log_probs, batch_size=self.batch_size,
            prefix_reuse=self.prefix_reuse, pad_id=self.tokenizer.pad_token_id, progress=self.progress,
            desc="reference log-probs" if model is self.reference else "log-probs",
        )
        return sums / np.array([s.stop - s.first for s in sequences], dtype=np.float64)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """β·mean per-token (log π − log π_ref) per pair, float64 [len(queries)]."""
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float64)
        sequences, groups = self._sequences(queries, documents), _groups(queries)
        return self.beta * _policy_minus_reference(
            self.policy, self.reference, lambda model: self._mean_log_probs(model, sequences, groups)
        )


class RewardHeadScorer:
    """Score = the reward model's scalar for ``document_prompt(query) + document + eos``.

    Read at the appended EOS, the last token of the sequence, whatever the pad token is: the
    reward model is trained with a pad token distinct from EOS, so the classifier read the
    EOS in training too (a pad equal to EOS would make a pad-stripping read land on the
    document's last token instead). Computed in float32 from the final hidden state.
    """

    def __init__(self, model, tokenizer, *, batch_size: int = DEFAULT_BATCH_SIZE, max_length: int | None = DEFAULT_MAX_LENGTH,
                 prefix_reuse: bool = True, progress: bool | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_length, self.progress = batch_size, max_length, progress
        inner = _unwrap(model)
        self._backbone = _backbone(model)
        self.prefix_reuse = prefix_reuse and _supports_prefix_reuse(self._backbone)
        self._head = inner.score if hasattr(inner, "score") else inner.classifier

    def _sequences(self, queries: Sequence[str], documents: Sequence[str]) -> list[_Sequence]:
        _check_pairs(queries, documents)
        eos = self.tokenizer.eos_token or ""
        prompt_of = {q: prompts.document_prompt(self.tokenizer, q) for q in dict.fromkeys(queries)}
        renders = [lambda d, p=prompt_of[q]: p + d + eos for q in queries]
        texts = [render(d) for render, d in zip(renders, documents)]
        return [_Sequence(ids, len(ids) - 1, len(ids)) for ids in _encode(self.tokenizer, texts, renders, documents, self.max_length)]

    def read_positions(self, queries: Sequence[str], documents: Sequence[str]) -> list[int]:
        """Index of the token whose hidden state the head reads (the closing EOS), per pair."""
        return [s.first for s in self._sequences(queries, documents)]

    def prompt_ids(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """The token ids each pair is scored on (document truncated to fit ``max_length``)."""
        return [s.ids for s in self._sequences(queries, documents)]

    def _reward(self, hidden: torch.Tensor, _following: torch.Tensor) -> torch.Tensor:
        head = self._head
        if isinstance(head, torch.nn.Linear):
            bias = head.bias.float() if head.bias is not None else None
            return F.linear(hidden.float(), head.weight.float(), bias)[:, 0]
        return head(hidden)[:, 0].float()

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Reward per pair, float64 [len(queries)]."""
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float64)
        return _sum_head_over_positions(
            self._backbone, self._sequences(queries, documents), _groups(queries), self._reward,
            batch_size=self.batch_size, prefix_reuse=self.prefix_reuse, pad_id=self.tokenizer.pad_token_id,
            progress=self.progress, desc="rewards",
        )


# --------------------------------------------------------------------------------------
# factory


def is_adapter_folder(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a PEFT adapter rather than full weights."""
    return (Path(model_dir) / "adapter_config.json").is_file()


def load_scorer(
    method: str,
    model_dir: str | Path,
    base_model: str | Path | None = None,
    *,
    beta: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    prefix_reuse: bool = True,
    progress: bool | None = None,
):
    """The scorer of ``method`` for the model in ``model_dir``.

    ``model_dir`` is a full model folder or a PEFT adapter folder (``adapter_config.json``);
    ``base_model`` is the folder or hub id the adapter was trained on, and for ``dpo`` and
    ``dpo_pairs`` with a full fine-tune also the reference model (default: the adapter's
    recorded base). For ``zeroshot`` pass the base model folder as ``model_dir``.
    ``beta``: the DPO β of ``dpo`` and ``dpo_pairs`` (their train ``beta``; ``None``:
    ``DEFAULT_BETA``, TRL's default); other methods ignore it. ``dtype``: ``None``/``"auto"``
    (:func:`~rerank_audit.models.loading.resolve_dtype` picks it) or a dtype name.
    Adapters are merged into their base, except for ``dpo`` and ``dpo_pairs``, whose
    reference is the base with the adapter disabled.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    device = torch.device(device) if device is not None else pick_device()
    dtype = resolve_dtype(dtype, device)
    model_dir = Path(model_dir)
    adapter = is_adapter_folder(model_dir)
    if adapter and base_model is None:
        base_model = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    tokenizer = load_tokenizer(model_dir if (model_dir / "tokenizer_config.json").is_file() else base_model)
    options = dict(batch_size=batch_size, max_length=max_length, prefix_reuse=prefix_reuse, progress=progress)

    if method in REWARD_HEAD_METHODS:
        if adapter:
            _require_trained_head(model_dir)
            model = _with_adapter(load_sequence_classifier(base_model, device, dtype), model_dir, device).merge_and_unload()
        else:
            model = load_sequence_classifier(model_dir, device, dtype)
        return RewardHeadScorer(model, tokenizer, **options)

    if method in REFERENCE_RELATIVE_METHODS:
        if adapter:  # not merged: the reference is the base with the adapter disabled
            policy, reference = _with_adapter(load_causal_lm(base_model, device, dtype), model_dir, device), None
        elif base_model is None:
            raise ValueError(f"{model_dir}: a fully fine-tuned {method} model needs base_model as its reference")
        else:
            policy, reference = load_causal_lm(model_dir, device, dtype), load_causal_lm(base_model, device, dtype)
        scorer = ImplicitRewardScorer if method in IMPLICIT_REWARD_METHODS else YesNoScorer
        return scorer(policy, tokenizer, reference=reference, beta=DEFAULT_BETA if beta is None else beta, **options)

    if adapter:  # merged: inference without the LoRA detour
        model = _with_adapter(load_causal_lm(base_model, device, dtype), model_dir, device).merge_and_unload()
    else:
        model = load_causal_lm(model_dir, device, dtype)
    return YesNoScorer(model, tokenizer, **options)


def _with_adapter(model, adapter_dir: Path, device):
    from peft import PeftModel

    logger.info("loading adapter %s", adapter_dir)
    return PeftModel.from_pretrained(model, str(adapter_dir)).to(device).eval()


def _require_trained_head(adapter_dir: Path) -> None:
    """A reward adapter must carry its trained score head, else the base's random head would score."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if not config.get("modules_to_save"):
        raise ValueError(
            f"{adapter_dir / 'adapter_config.json'}: no modules_to_save, so the reward head was not saved. "
            "Fix: train the reward adapter with task_type='SEQ_CLS' (PEFT then saves the score head)"
        )
