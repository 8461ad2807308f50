"""Logging for workflow scripts: everything (logging, warnings, tqdm, tracebacks) goes to the rule's log."""

from __future__ import annotations

import logging
import sys


def log_to(path: str) -> logging.Logger:
    """Send stderr and the logging module to ``path`` (Snakemake's ``log:`` file) and return a logger."""
    stream = open(path, "a", buffering=1, encoding="utf-8")
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.captureWarnings(True)
    return logging.getLogger("rerank_audit")
