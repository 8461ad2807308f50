"""Training: examples from qrels and BM25 hard negatives (``examples``), TRL trainers (``trainers``).

``trainers`` imports torch / transformers / TRL; import it only where a model is trained.
"""
