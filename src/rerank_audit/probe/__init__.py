"""Probe stage: shortcut probes, controlled document edits and how each method's score responds.

- ``edits``: the edits, each a pure seeded function from a document text to its edited copy;
- ``responses``: ``probe_responses``, the per-query response of one scorer to each probe (BM25's
  scorer: ``retrieval.bm25_scorer``); statistics and figures: ``evaluation.probes``.
"""
