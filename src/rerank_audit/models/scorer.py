"""The one interface every re-ranking method implements (see STYLE.md, ir_measures lesson).

Re-ranking, attribution and faithfulness metrics only ever call ``score_pairs``; they never
ask which method or model is behind it.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Scorer(Protocol):
    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Relevance scores of (query, document) pairs, float64 array of len(queries).

        ``documents`` are the texts the model reads (``prompts.document_text(title, text)``).
        Higher means more relevant; the scale is the method's own.
        """
        ...
