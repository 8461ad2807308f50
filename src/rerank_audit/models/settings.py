"""How a scorer runs: one typed object, built once from the config and passed whole.

The defaults here are the one place a scoring setting is defaulted; they equal
``config/config.yaml`` (a test holds them together). Imports nothing heavy: the Snakefile
builds these objects at parse time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class ScoringSettings:
    """
    ``batch_size``: sequences per forward pass. ``max_length``: tokens of a scored sequence
    (the document's end is cut to fit; None: no limit). ``dtype``: ``auto`` (bfloat16 where
    measured faster) or float32 / bfloat16 / float16. ``device``: None picks CUDA when a GPU
    is visible, else the CPU. ``prefix_reuse``: run the tokens a query's sequences share once.
    ``progress``: a progress bar (None: for long jobs only).
    """

    batch_size: int = 16
    max_length: int | None = 256
    dtype: str = "auto"
    device: str | None = None
    prefix_reuse: bool = True
    progress: bool | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], stage: str = "rerank") -> "ScoringSettings":
        """The settings of ``stage`` (``rerank``: re-ranking and training fit; ``explain``:
        attributions, faithfulness and rationale checks, batched by ``explain.batch_size``)."""
        batch_size = config["explain" if stage == "explain" else "rerank"]["batch_size"]
        return cls(batch_size=int(batch_size), max_length=config["rerank"]["max_length"], dtype=config["model"]["dtype"])

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a Snakemake ``params`` entry (rebuilt with ``ScoringSettings(**d)``)."""
        return asdict(self)

    def but(self, **changes) -> "ScoringSettings":
        return replace(self, **changes)
