"""Explain stage: word attributions (SHAP), their faithfulness, and written rationales.

Words (what a word is, when two match) live in :mod:`rerank_audit.text.words`.

- ``score_cache``: every masked (query, document) text scored once per scorer;
- ``attribution``: ``explain_pairs`` (word-level SHAP through ``Scorer.score_pairs``), ``top_keywords``;
- ``faithfulness``: comprehensiveness / sufficiency against random words, deletion curves,
  lexical-shortcut index;
- ``simulatability``: do the summed attributions predict the score change of held-out word removals?
- ``rationale``: ``write_rationales`` with an instruction LLM, and the rationale checks.
"""
