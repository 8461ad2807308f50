"""A score cache: every masked (query, document) text is scored once per scorer.

Attributions and faithfulness metrics score many masked variants of the same pairs (the
full pair, the empty document, the same subsets under different orders). The cache is a
plain dict keyed by the exact (query text, document text) a scorer read, holding the
float score. One cache belongs to one scorer: never share it between methods.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rerank_audit.models.scorer import Scorer

ScoreCache = dict[tuple[str, str], float]
# Pairs whose masked texts are gathered into one score_pairs call (config explain.pairs_per_call):
# the scorer then batches that call by explain.batch_size sequences per forward pass.
PAIRS_PER_CALL = 64


def cached_scores(scorer: Scorer, queries: Sequence[str], documents: Sequence[str], cache: ScoreCache) -> np.ndarray:
    """Scores of the pairs, float64 array of len(queries); only pairs missing from ``cache`` reach the scorer.

    The missing pairs (deduplicated, in first-seen order) go to ``scorer.score_pairs`` in a
    single call, which batches them for the device; no call is made when all are cached.
    """
    keys = list(zip(queries, documents, strict=True))
    missing = list(dict.fromkeys(key for key in keys if key not in cache))
    if missing:
        scores = np.asarray(scorer.score_pairs([q for q, _ in missing], [d for _, d in missing]), dtype=np.float64)
        if scores.shape != (len(missing),):
            raise ValueError(f"score_pairs returned shape {scores.shape} for {len(missing)} pairs")
        cache.update(zip(missing, scores.tolist()))
    return np.fromiter((cache[key] for key in keys), dtype=np.float64, count=len(keys))
