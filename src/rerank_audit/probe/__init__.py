"""Probe stage: shortcut probes, controlled document edits and how each method's score responds.

- ``registry``: every probe, one entry each (its edit, what it needs, BM25's response, its label);
- ``edits``: the text edits, each a pure seeded function from a document text to its edited copy;
- ``pairs``: per edit probe, which head documents it edits, with their edited copies;
- ``responses``: ``probe_responses``, the per-query response of one scorer to each probe (BM25's
  scorer: ``retrieval.bm25_scorer``); statistics and figures: ``evaluation.probes``.
"""
