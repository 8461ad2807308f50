"""Training: examples from qrels and BM25 hard negatives (``examples``); the training settings
(``settings``, read at parse time, with the trainer kinds of :mod:`rerank_audit.trainer_kinds`); documents cut to
fit (``fit_documents``); checkpoints (``checkpoints``); building a trainer (``build``) and a
training run (``trainers``).

``build``, ``trainers``, ``lce`` and ``selection`` import torch / transformers / TRL; import
them only where a model is trained.
"""
