"""rerank-audit: do LLM re-rankers that score well also explain themselves faithfully?"""

__version__ = "0.1.0"
