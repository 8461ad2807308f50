"""One entry point for every input format: ``read_collection(format, **sources)``."""

from __future__ import annotations

from rerank_audit.data.beir import read_beir
from rerank_audit.data.climate_fever import read_climate_fever
from rerank_audit.data.collection import Collection
from rerank_audit.data.ratings import read_ratings
from rerank_audit.data.trec import read_trec

ADAPTERS = {
    "climate-fever": read_climate_fever,
    "beir": read_beir,
    "trec": read_trec,
    "ratings": read_ratings,
}


def read_collection(fmt: str, **sources) -> Collection:
    """Read a collection of format ``fmt``; ``sources`` are the adapter's keyword arguments."""
    if fmt not in ADAPTERS:
        raise ValueError(f"unknown collection format '{fmt}'; known: {sorted(ADAPTERS)}")
    return ADAPTERS[fmt](**sources)
