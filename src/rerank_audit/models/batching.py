"""How many sequences go into one forward pass, and how much memory the scorer may hold: counted in bytes.

What a scorer holds while it runs (:mod:`.scoring.engine`), per token of a forward pass:
its keys and values in every layer (the pass keeps its cache: a cached prefix continues in
it) and one layer's activations at a time; per cached prefix position, its keys and values
in every layer; and, whatever the batch's size, the vocabulary logits of up to
``LOGIT_ROWS`` scored positions (:class:`TokenCost`). A batch of length-sorted sequences
costs rows × (longest row + w × widest cached prefix) tokens, where a cached position a row
attends to weighs w of a token it runs: in memory its keys and values in every layer against
a token's keys, values and activations; in the CPU cache one layer's keys and values against
one layer's activations (a row continuing a long prefix runs few tokens, so counting its
prefix in full made batches of a few hundred tokens). The prefixes cached at once hold at
most as many positions as the memory bound's batch (``Batching.prefix_tokens``), so a
memory budget of T tokens needs ``TokenCost.bytes_for(T)`` bytes.

The budget is sized at run time, never assumed, and the log says what bounded it:

- memory: ``MEMORY_SHARE`` of what the job can still allocate — on a GPU its free memory and
  what torch's allocator holds unused; on the CPU the least of MemAvailable, the cgroup's
  limit less its usage, and the job's own ``memory_mb`` (Snakemake's ``resources.mem_mb``)
  less what it holds besides its batches, counted as its rule counts it (:func:`job_holdings`,
  ``ScoringSettings.holds_bytes``) so that a rerun cuts the same batches (the resident memory
  grows with the blocks the allocator keeps and differs between runs), or where nothing is
  counted (a training job's dev scoring, beside the trainer's state) its resident memory;
- on the CPU also speed: the last-level cache over one layer's activations per token, so a
  batch's working set stays in cache.

:func:`scoring_memory_mb` is the same accounting run the other way: the memory a job needs
to score at a budget, which the rules declare (``resources: mem_mb``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

logger = logging.getLogger(__name__)

# Share of the memory the job can still allocate that a scorer plans to fill; the rest is
# allocator slack (freed blocks the C heap keeps), the caller's data and Python objects.
MEMORY_SHARE = 0.5
# Prefix clusters whose sequences are sorted by length together: enough for this many batches.
BATCHES_PER_CHUNK = 8
TOKEN_BOUNDS = (512, 262_144)
DEFAULT_CACHE_BYTES = 8 << 20  # when the CPU's last-level cache cannot be read
# Scored positions per vocabulary projection (the logits of token log-probabilities).
LOGIT_ROWS = 1024
# The budget a rule's declared memory is sized for: batches of this many tokens score at
# full speed on CPUs and small GPUs (bench/scoring.py); a job given more memory
# (--set-resources RULE:mem_mb=...) sizes its batches up to what it is given.
PLANNED_TOKENS = 8192
# Resident memory of a scoring job besides the weights: Python, torch, transformers, tokenizer.
RUNTIME_BYTES = 700 << 20
_FLOAT32 = 4


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that its memory depends on."""

    hidden: int
    heads: int
    head_dim: int
    kv_dim: int
    intermediate: int
    layers: int
    vocab: int
    tied: bool

    @classmethod
    def of(cls, config: Mapping | object) -> "ModelShape":
        """From a transformers config or its dict (config.json)."""
        get = config.get if isinstance(config, Mapping) else lambda key, default=None: getattr(config, key, default)
        hidden, heads = get("hidden_size"), get("num_attention_heads")
        head_dim = get("head_dim") or hidden // heads
        return cls(hidden, heads, head_dim, (get("num_key_value_heads") or heads) * head_dim, get("intermediate_size") or 4 * hidden,
                   get("num_hidden_layers"), get("vocab_size"), bool(get("tie_word_embeddings", True)))


@dataclass(frozen=True)
class TokenCost:
    """Bytes the scorer holds per token of a forward pass, and per pass whatever its size.

    ``cache``: the token's keys and values in every layer. ``activations``: one layer's
    working set per token (hidden states, q/k/v, the MLP's gate, up and product).
    ``fixed``: per pass, the float32 vocabulary logits of ``LOGIT_ROWS`` scored positions,
    their model-dtype original and the log-sum-exp's temporary.
    """

    cache: int
    activations: int
    fixed: int
    layers: int

    @classmethod
    def of(cls, config: Mapping | object, element_size: int) -> "TokenCost":
        """From a transformers config (or its dict) and the weights' element size in bytes."""
        shape = ModelShape.of(config)
        return cls(
            cache=2 * shape.layers * shape.kv_dim * element_size,
            activations=(3 * shape.hidden + 2 * shape.kv_dim + 4 * shape.intermediate) * element_size,
            fixed=LOGIT_ROWS * shape.vocab * (2 * _FLOAT32 + element_size),
            layers=shape.layers,
        )

    @classmethod
    def of_model(cls, model) -> "TokenCost":
        return cls.of(model.config.get_text_config(), next(model.parameters()).element_size())

    @property
    def per_budget_token(self) -> int:
        """Bytes per token of the budget: the batch's cache and activations, and as many cached prefix positions."""
        return 2 * self.cache + self.activations

    @property
    def prefix_weight_in_memory(self) -> float:
        """A cached prefix position of a batch row, in tokens of a memory budget: its keys and values in every
        layer (the pass keeps them), against a token's keys, values and one layer's activations."""
        return self.cache / (self.cache + self.activations)

    @property
    def prefix_weight_in_cache(self) -> float:
        """A cached prefix position of a batch row, in tokens of a CPU-cache budget: the keys and values one
        layer's attention reads, against one layer's activations (the working set of one layer at a time)."""
        return self.cache / self.layers / self.activations

    def bytes_for(self, tokens: int) -> int:
        return self.fixed + tokens * self.per_budget_token

    def tokens_for(self, available: float) -> int:
        return max(0, int((available - self.fixed) // self.per_budget_token))


@dataclass(frozen=True)
class Batching:
    """At most ``rows`` sequences and ``tokens`` padded tokens per forward pass (None: no limit), a cached
    prefix position of a row counting ``prefix_weight`` of a token; where the CPU cache sized ``tokens``,
    ``memory`` is the memory's bound too, (tokens, prefix weight). The prefixes cached at once hold at
    most ``prefix_tokens`` key/value positions (None: no limit). ``reason``: what sized the budget, for the log."""

    rows: int | None = None
    tokens: int | None = None
    prefix_tokens: int | None = None
    reason: str = ""
    prefix_weight: float = 1.0
    memory: tuple[int, float] | None = None

    def split(self, lengths: Sequence[int], extra: int | Sequence[int] = 0) -> list[range]:
        """Consecutive batches of items whose ``lengths`` are sorted longest first.

        A batch costs (its rows) × (its first item's length + ``prefix_weight`` × the largest
        ``extra`` among its rows) tokens, within ``tokens`` and within ``memory``'s bound;
        ``extra``: key/value positions a row attends to beyond its own tokens (a cached prefix),
        one for all or one per item. Every batch holds at least one item.
        """
        extras = [extra] * len(lengths) if isinstance(extra, int) else list(extra)
        limits = ([(self.tokens, self.prefix_weight)] if self.tokens is not None else []) + ([self.memory] if self.memory else [])
        batches, start = [], 0
        while start < len(lengths):
            stop, widest = start + 1, extras[start]
            while stop < len(lengths) and (self.rows is None or stop - start < self.rows):
                wider = max(widest, extras[stop])
                if any((stop - start + 1) * (lengths[start] + weight * wider) > tokens for tokens, weight in limits):
                    break
                stop, widest = stop + 1, wider
            batches.append(range(start, stop))
            start = stop
        return batches

    def cost(self, length: int, extra: int) -> float:
        """What one item of ``length`` tokens with ``extra`` cached prefix positions takes of a batch of ``tokens``."""
        return length + self.prefix_weight * extra

    def describe(self) -> str:
        size = f"{self.rows} sequences" if self.rows is not None else f"{self.tokens} tokens"
        if self.rows is None and self.prefix_weight != 1:
            size += f", a cached prefix position {self.prefix_weight:.2f} of one"
        return f"{size} ({self.reason})" if self.reason else size


def batching_for(settings, model) -> Batching:
    """The batches of ``settings`` (a ScoringSettings) for ``model`` on its device.

    ``batch_size`` sequences when set, else ``batch_tokens`` tokens (every prefix position
    counted in full), else the budget sized here (see the module docstring); cached prefixes
    hold at most as many positions as one batch of the memory's budget. A set size that needs
    more memory than the job has is kept, with a warning.
    """
    cost = TokenCost.of_model(model)
    device = next(model.parameters()).device
    fits, memory = memory_tokens(model, settings.memory_mb, settings.holds_bytes)
    if settings.batch_size is not None:
        return Batching(rows=int(settings.batch_size), prefix_tokens=max(fits, TOKEN_BOUNDS[0]), reason=f"set; prefixes by {memory}")
    if settings.batch_tokens is not None:
        tokens = int(settings.batch_tokens)
        if tokens > fits:
            logger.warning("batch_tokens %d needs %s, more than this job may use (%s)", tokens, _gb(cost.bytes_for(tokens)), memory)
        return Batching(tokens=tokens, prefix_tokens=tokens, reason="set")
    candidates = [(fits, memory, cost.prefix_weight_in_memory)]
    if device.type != "cuda":
        cache = _last_level_cache_bytes()
        candidates.append((int(cache / cost.activations), f"CPU cache: {cache >> 20} MiB at {cost.activations / 1e3:.1f} kB a token", cost.prefix_weight_in_cache))
    bound = min(range(len(candidates)), key=lambda i: candidates[i][0])  # 0: memory, 1: the CPU cache
    tokens, reason, weight = candidates[bound]
    for n, why, _ in candidates:
        if n < TOKEN_BOUNDS[0]:
            logger.warning("%s allows %d tokens a batch; scoring at the floor of %d", why, n, TOKEN_BOUNDS[0])
    bounded = [min(max(n, TOKEN_BOUNDS[0]), TOKEN_BOUNDS[1]) for n in (tokens, fits)]
    others = "; ".join(f"{why} allows {n}" for i, (n, why, _) in enumerate(candidates) if i != bound)
    return Batching(tokens=bounded[0], prefix_tokens=bounded[1], reason=f"bounded by {reason}" + (f"; {others}" if others else ""),
                    prefix_weight=weight, memory=(bounded[1], cost.prefix_weight_in_memory) if bound else None)


def memory_tokens(model, memory_mb: int | None, holds: int | None) -> tuple[int, str]:
    """Tokens of a pass that ``MEMORY_SHARE`` of what the job can still allocate holds (``memory_mb``:
    the job's ``resources.mem_mb``; ``holds``: bytes it holds besides, see :func:`available_memory`),
    and what the log says of it."""
    cost = TokenCost.of_model(model)
    available, source = available_memory(next(model.parameters()).device, memory_mb, holds)
    usable = MEMORY_SHARE * available
    return cost.tokens_for(usable), f"memory: {_gb(usable)} of {_gb(available)} {source} at {cost.per_budget_token / 1e3:.1f} kB a token"


def generation_batching(model, memory_mb: int | None) -> Batching:
    """The batches of greedy generation: as many prompts as the job's memory holds with their new tokens.

    No CPU-cache bound, unlike scoring: a generation step runs one token a row, so its cost per
    step is mostly fixed and fewer, fuller batches are faster (``bench/rationale.py``).
    """
    holds = job_holdings(model.config.get_text_config(), next(model.parameters()).element_size())
    fits, memory = memory_tokens(model, memory_mb, holds)
    return Batching(tokens=min(max(fits, TOKEN_BOUNDS[0]), TOKEN_BOUNDS[1]), reason=f"bounded by {memory}")


def token_budget(model, settings=None) -> int:
    """Padded tokens per forward pass for ``model`` on its device, sized as :func:`batching_for` sizes an auto budget."""
    from .settings import ScoringSettings

    return batching_for((settings or ScoringSettings()).but(batch_size=None, batch_tokens=None), model).tokens


def model_config(model: str | Path) -> dict:
    """The (text) config.json of a model folder, else of a hub id (from huggingface_hub's cache, or downloaded)."""
    if Path(model).is_dir():
        config = json.loads((Path(model) / "config.json").read_text())
    else:
        from huggingface_hub import hf_hub_download

        config = json.loads(Path(hf_hub_download(str(model), "config.json")).read_text())
    return config.get("text_config", config)


def scoring_memory_mb(config: Mapping, element_size: int, tokens: int = PLANNED_TOKENS, copies: int = 1) -> int:
    """MB a job needs to score with the model of ``config`` (a config.json dict) at a budget of ``tokens``.

    ``copies`` of the weights (a fully fine-tuned DPO policy and its reference: 2), the
    runtime, and the scorer's bytes for ``tokens`` over ``MEMORY_SHARE`` (the job's budget
    is sized from that share of its memory, so a job given this much scores at ``tokens``).
    """
    working = TokenCost.of(config, element_size).bytes_for(tokens) / MEMORY_SHARE
    return math.ceil((job_holdings(config, element_size, copies) + working) / 2**20)


def job_holdings(config: Mapping | object, element_size: int, copies: int = 1) -> int:
    """Bytes a scoring job holds besides its batches: the runtime and ``copies`` of the weights of the model of
    ``config`` (a config or its dict) at ``element_size`` bytes a weight."""
    return RUNTIME_BYTES + copies * parameter_count(config) * element_size


def parameter_count(config: Mapping) -> int:
    """Parameters of a decoder-only transformer of ``config`` (embeddings, attention, gated MLP; norms left out)."""
    s = ModelShape.of(config)
    embeddings = s.vocab * s.hidden * (1 if s.tied else 2)
    return embeddings + s.layers * (2 * s.hidden * s.heads * s.head_dim + 2 * s.hidden * s.kv_dim + 3 * s.hidden * s.intermediate)


# --------------------------------------------------------------------------------------
# the memory a job has


def available_memory(device, memory_mb: int | None = None, holds: int | None = None) -> tuple[int, str]:
    """(bytes the job can still allocate on ``device``, what bounded it).

    CUDA: the device's free memory and the blocks torch's allocator reserved and holds unused
    (an earlier batch's, which the next one reuses). CPU: the least of MemAvailable, the
    cgroup's limit less its usage (v2 or v1), and ``memory_mb`` (the job's own memory) less
    ``holds`` (what the job holds besides the planned work, counted: :func:`job_holdings`),
    or where ``holds`` is None less this process's resident memory.
    """
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device), "free on the GPU"
    bounds = [(_meminfo_bytes("MemAvailable"), "MemAvailable")]
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        bounds.append((cgroup, "under the cgroup limit"))
    if memory_mb:
        held, how = (_resident_bytes(), "resident") if holds is None else (holds, "counted")
        bounds.append((memory_mb * 2**20 - held, f"left of the job's mem_mb {memory_mb} ({_gb(held)} {how})"))
    bytes_, source = min((b, s) for b, s in bounds if b is not None)
    return max(bytes_, 0), source


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _proc_bytes(path: str, field: str) -> int | None:
    """A "field: N kB" line of a /proc file, in bytes; None where it cannot be read."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _meminfo_bytes(field: str) -> int | None:
    return _proc_bytes("/proc/meminfo", field)


def _resident_bytes() -> int:
    """This process's resident memory (VmRSS), 0 where /proc cannot tell."""
    return _proc_bytes("/proc/self/status", "VmRSS") or 0


def _cgroup_headroom(root: str | Path = "/sys/fs/cgroup") -> int | None:
    """The cgroup's memory limit less its usage (v2: memory.max, v1: memory/memory.limit_in_bytes); None: no limit."""
    root = Path(root)
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            text = (root / limit).read_text().strip()
            if text == "max" or int(text) >= 1 << 60:  # v1 writes "no limit" as a huge number
                return None
            return int(text) - int((root / usage).read_text())
        except (OSError, ValueError):
            continue
    return None


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
