"""The method registry: every re-ranking method, one entry each.

The Snakefile, the config checks, training, scoring, statistics, the summary and the plots
read this table and nothing else to learn what a method is. Adding a method is one entry
here, plus (if its scoring family or trainer is new) one scoring or training module.

Imports nothing heavy: a Snakefile parse and a dry run read it.

| field            | meaning                                                                          |
|------------------|----------------------------------------------------------------------------------|
| ``family``       | the scoring module under ``models.scoring`` (yesno, document, reward, likelihood) |
| ``trainer``      | its trainer kind, an entry of :mod:`rerank_audit.trainer_kinds` (``sft``, ``dpo``, ``reward``, ``lce``); None: the base model as it is |
| ``training_table`` | the table of rule ``training_data`` the trainer reads (None when untrained)    |
| ``untrained``    | the untrained method it is compared with ("did training help?")                  |
| ``display``      | its name in tables and figures                                                   |
| ``fusable``      | whether a ``<method>+bm25`` fused row may be configured (``rerank.fusion``)       |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rerank_audit.trainer_kinds import TRAINERS, trainer_kind

# Training tables that rule training_data writes, with the columns a trainer reads.
TRAINING_COLUMNS = {
    "sft_examples": ("prompt", "completion"),
    "answer_pairs": ("prompt", "chosen", "rejected"),
    "document_pairs": ("prompt", "chosen", "rejected"),
    "query_examples": ("prompt", "completion"),
    "lce_groups": ("group", "position", "query", "document"),
}


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    display: str
    trainer: str | None = None
    training_table: str | None = None
    untrained: str | None = None
    fusable: bool = True

    @property
    def trained(self) -> bool:
        return self.trainer is not None

    @property
    def scored_against_reference(self) -> bool:
        """DPO-trained methods score β·(policy − reference): the implicit reward DPO optimises."""
        return self.trained and trainer_kind(self.trainer).scored_against_reference

    @property
    def untrained_ranks(self) -> bool:
        """Whether its own scorer ranks before training (step 0 of model selection). Not for DPO
        (policy = reference: the implicit reward is 0 everywhere), nor for a family other than
        its untrained counterpart's (a new head: a random ranking)."""
        return self.trained and not self.scored_against_reference and REGISTRY[self.untrained].family == self.family


REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method("zeroshot", family="yesno", display="zero-shot"),
        Method("sft", family="yesno", display="sft", trainer="sft", training_table="sft_examples", untrained="zeroshot"),
        Method("dpo", family="yesno", display="dpo", trainer="dpo", training_table="answer_pairs", untrained="zeroshot"),
        # The untrained form of the document and reward families ranks nothing (the implicit
        # reward is 0 everywhere; the head is new), so they are held against zero-shot yes/no.
        Method("dpo_pairs", family="document", display="dpo_pairs", trainer="dpo", training_table="document_pairs", untrained="zeroshot"),
        Method("reward", family="reward", display="reward", trainer="reward", training_table="document_pairs", untrained="zeroshot"),
        Method("qlm", family="likelihood", display="qlm"),
        Method("qlm_sft", family="likelihood", display="qlm_sft", trainer="sft", training_table="query_examples", untrained="qlm"),
        # Localized contrastive estimation: a relevant document and its query's negatives in one
        # group, cross-entropy over the group's query log-likelihoods (training.lce).
        Method("qlm_lce", family="likelihood", display="qlm_lce", trainer="lce", training_table="lce_groups", untrained="qlm"),
    )
}
# Rows that are not methods of the registry but stand in every table: the first stage and
# the random re-ordering of its head.
BASELINE_NAMES = {"random": "random order", "bm25": "BM25"}  # in table order


def method(name: str) -> Method:
    """The registry entry of ``name``; ValueError naming the known methods otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(REGISTRY)}") from None


def display_name(name: str) -> str:
    """How a method, a baseline or a fused row (``<method>+bm25``) is named in tables and figures."""
    base, plus, rest = name.partition("+")
    shown = BASELINE_NAMES.get(base) or (REGISTRY[base].display if base in REGISTRY else base)
    return shown + plus + rest


def trained_methods() -> list[str]:
    return [m.name for m in REGISTRY.values() if m.trained]


# A scoring family is a module of models/scoring with ``from_folder`` (models/scoring/__init__.py);
# read as text, since importing the package loads torch.
SCORING_MODULES = Path(__file__).parent / "models" / "scoring"


@cache
def scoring_families() -> tuple[str, ...]:
    return tuple(sorted(path.stem for path in SCORING_MODULES.glob("*.py") if re.search(r"^def from_folder\(", path.read_text(), re.M)))


def check_registry() -> None:
    """Raise unless every entry names a scoring family, a trainer kind of the trainer registry with a training
    table it reads (one of ``TRAINING_COLUMNS``) and an untrained counterpart, or none of the three."""
    for name, entry in REGISTRY.items():
        where = f"rerank_audit/methods.py, method {name!r}"
        if entry.family not in scoring_families():
            raise ValueError(f"{where}: family {entry.family!r} is not a scoring family; use one of {', '.join(scoring_families())}")
        if not entry.trained:
            if entry.training_table is not None or entry.untrained is not None:
                raise ValueError(f"{where}: an untrained method has no training_table and no untrained counterpart; remove them or set a trainer")
            continue
        if entry.trainer not in TRAINERS:
            raise ValueError(f"{where}: trainer {entry.trainer!r} is not a trainer kind; use one of {', '.join(TRAINERS)} (rerank_audit/trainer_kinds.py)")
        tables = trainer_kind(entry.trainer).tables
        if entry.training_table not in TRAINING_COLUMNS or entry.training_table not in tables:
            raise ValueError(f"{where}: training_table {entry.training_table!r} is not a table the {entry.trainer} trainer reads; use one of {', '.join(tables)}")
        if entry.untrained not in REGISTRY or REGISTRY[entry.untrained].trained:
            untrained = [m for m, e in REGISTRY.items() if not e.trained]
            raise ValueError(f"{where}: untrained {entry.untrained!r} is not an untrained method; use one of {', '.join(untrained)}")
