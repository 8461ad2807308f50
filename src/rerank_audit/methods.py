"""The method registry: every re-ranking method, one entry each.

The Snakefile, the config checks, training, scoring, statistics, the summary and the plots
read this table and nothing else to learn what a method is. Adding a method is one entry
here, plus (if its scoring family or trainer is new) one scoring or training module.

Imports nothing heavy: a Snakefile parse and a dry run read it.

| field            | meaning                                                                          |
|------------------|----------------------------------------------------------------------------------|
| ``family``       | the scoring module under ``models.scoring`` (yesno, document, reward, likelihood) |
| ``trainer``      | the trainer (TRL's ``sft``, ``dpo``, ``reward``; ``lce``: ``training.lce``); None: the base model as it is |
| ``training_table`` | the table of rule ``training_data`` the trainer reads (None when untrained)    |
| ``untrained``    | the untrained method it is compared with ("did training help?")                  |
| ``display``      | its name in tables and figures                                                   |
| ``fusable``      | whether a ``<method>+bm25`` fused row may be configured (``rerank.fusion``)       |
"""

from __future__ import annotations

from dataclasses import dataclass

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
        return self.trainer == "dpo"

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
