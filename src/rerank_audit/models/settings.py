"""How a scorer runs: one typed object, built once from the config and passed whole.

The defaults here are the one place a scoring setting is defaulted; they equal
``config/config.yaml`` (a test holds them together). Imports nothing heavy: the Snakefile
builds these objects at parse time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping


AUTO = "auto"  # a config value sized at run time
# model.attn_implementation: auto is flash_attention_2 where the package is installed and the weights are half
# precision on a GPU, else transformers' own choice (models.loading.resolve_attn_implementation).
ATTENTION = (AUTO, "sdpa", "eager", "flash_attention_2")


@dataclass(frozen=True)
class ScoringSettings:
    """
    ``batch_size``: sequences per forward pass; None: as many as fit ``batch_tokens`` padded
    tokens, a budget sized for the device when None (:mod:`rerank_audit.models.batching`).
    ``max_length``: tokens of a scored sequence
    (the document's end is cut to fit; None: no limit). ``dtype``: ``auto`` (bfloat16 where
    measured faster) or float32 / bfloat16 / float16. ``device``: None picks CUDA when a GPU
    is visible, else the CPU. ``prefix_reuse``: run the tokens that sequences share once (a
    query's, or the first words of a masked document's variants).
    ``progress``: a progress bar (None: for long jobs only). ``memory_mb``: the job's memory
    (Snakemake's ``resources.mem_mb``), which bounds the batches with what the machine has
    (None: the machine's and the cgroup's alone). ``holds_bytes``: what the job holds besides the
    scorer's batches, counted where the scorer is loaded (the runtime and its weights), so that a
    job cuts the same batches on every run; None: this process's resident memory, read at each
    call (a training job, whose trainer holds more than the scorer). ``attn_implementation``:
    transformers' attention (``model.attn_implementation``; auto: :func:`rerank_audit.models.loading.resolve_attn_implementation`).
    ``packing``: padding-free batches, sequences packed into one row (variable-length attention);
    None: where the attention runs them without a dense mask (:func:`rerank_audit.models.scoring.packing.packs`).
    """

    batch_size: int | None = None
    batch_tokens: int | None = None
    max_length: int | None = 256
    dtype: str = "auto"
    device: str | None = None
    prefix_reuse: bool = True
    progress: bool | None = None
    memory_mb: int | None = None
    holds_bytes: int | None = None
    attn_implementation: str = AUTO
    packing: bool | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], stage: str = "rerank") -> "ScoringSettings":
        """The settings of ``stage`` (``rerank``: re-ranking and training fit; ``explain``:
        attributions, faithfulness and rationale checks, batched by ``explain.batch_size``).
        ``auto`` batch sizes fill the token budget ``rerank.batch_tokens`` (auto: sized for the device)."""
        batch_size = config["explain" if stage == "explain" else "rerank"]["batch_size"]
        tokens = config["rerank"].get("batch_tokens", AUTO)
        return cls(
            batch_size=None if batch_size == AUTO else int(batch_size),
            batch_tokens=None if tokens == AUTO else int(tokens),
            max_length=config["rerank"]["max_length"],
            dtype=config["model"]["dtype"],
            attn_implementation=config["model"].get("attn_implementation", AUTO),
        )

    @classmethod
    def of_job(cls, snakemake) -> "ScoringSettings":
        """The settings a rule passed as ``params.scoring`` (a dict), bounded by the job's ``resources.mem_mb``.

        The memory is a resource, not a parameter: a job given more or less of it re-sizes its
        batches and re-runs nothing."""
        return cls(**snakemake.params.scoring, memory_mb=snakemake.resources.get("mem_mb"))

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a Snakemake ``params`` entry (rebuilt with ``ScoringSettings(**d)``); the
        memory (``memory_mb``, ``holds_bytes``) is left out: a job's resource, it changes no result.
        ``attn_implementation`` and ``packing`` are left out at their defaults (auto, None), so that adding them re-ran no job."""
        defaults = {"attn_implementation": AUTO, "packing": None}
        return {k: v for k, v in asdict(self).items() if k not in ("memory_mb", "holds_bytes") and not (k in defaults and v == defaults[k])}

    def but(self, **changes) -> "ScoringSettings":
        return replace(self, **changes)
