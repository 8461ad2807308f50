"""Text shared across stages, with no model behind it (no torch).

- ``words``: what a word is, when two words match (stemming), which are content words;
- ``prompts``: the prompts every method is trained and scored on, the query-likelihood template;
- ``truncation``: cutting a document's end so that a rendered prompt fits a token budget.
"""
