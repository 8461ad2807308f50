"""Fetch a public source file once and check its sha256 before anyone reads it."""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.request
from pathlib import Path

from rerank_audit.io import atomic_path

log = logging.getLogger(__name__)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_verified(url: str, sha256: str, path: str | Path) -> None:
    """Download ``url`` to ``path``; fail (and keep nothing) if its sha256 is not ``sha256``."""
    log.info("downloading %s", url)
    with atomic_path(path) as tmp:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        actual = sha256_of(tmp)
        if actual != sha256.lower():
            raise ValueError(f"{url}: sha256 {actual} differs from the configured {sha256}; the source changed or the config is wrong")
    log.info("wrote %s (sha256 ok)", path)
