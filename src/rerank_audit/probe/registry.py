"""The probe registry: every shortcut probe, one entry each.

The config check, the probe jobs (``probe.responses``), the statistics, figures and tables
(``evaluation.probes``, ``evaluation.probe_summary``) read this table and nothing else to learn
what a probe is. Adding a probe is one entry here, its probed pairs (a function in
``probe.pairs``, usually over a text edit in ``probe.edits``) and a test of BM25's response
against its formula (``tests/test_probes.py``); docs/methods.md says how.

Imports nothing heavy: the config check reads it at every Snakefile parse.

| field       | meaning                                                                                  |
|-------------|------------------------------------------------------------------------------------------|
| ``label``   | its name in tables (probes.md)                                                           |
| ``reading`` | what a positive Δ means, in a few words (figure titles, findings)                        |
| ``bm25``    | BM25's response by its formula: ``rises``, ``falls``, ``none`` (exactly 0), ``either`` (depends on the data) |
| ``pairs``   | the probed pairs (``probe.pairs``): which documents it edits and how; None: a comparison of documents as they are (stance) |
| ``needs``   | what a dataset must have for it (a key of ``REQUIREMENTS``); None: any dataset           |
| ``overtake``| it edits non-relevant documents: the share of (relevant, edited) pairs where the edited one scores higher, before and after, is reported |

BM25 (Lucene: score = Σ_t idf(t)·tf/(tf + k1·(1 − b + b·dl/avgdl)) over the query's terms t,
stop words removed, dl in tokens) by the formula, for a head document that holds a query term
(one without any scores 0 and stays there, but under stuffing):

- stuffing (at the end or the start): each query term's tf rises by 1 and dl by their number:
  rises; positions are the same bag of words, so both Δ are equal;
- shuffle: the same bag of words: exactly 0;
- repetition: tf and dl double, and 2tf/(2tf + k1(1 − b + 2b·dl/avgdl)) = tf/(tf + k1(1 − b)/2 + k1·b·dl/avgdl)
  is above tf/(tf + k1(1 − b) + k1·b·dl/avgdl) where b < 1: rises;
- distractor (end or start), injected instruction: no query term added (by construction), dl
  grows by the sentence's tokens: falls;
- neutral padding: no query term added, dl grows by one token per word of the document: falls;
- negation: "not" (inserted, or removed where it follows the auxiliary) is one of BM25's English
  stop words, so tf and dl are unchanged: exactly 0 (with ``retrieve.stopwords: null``, dl ± 1:
  a small move, down where "not" is inserted);
- marker: one token longer, the marker is in no query: falls;
- stance: no edit; SUPPORTS and REFUTES evidence differ in their words: either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from rerank_audit.probe.pairs import (
    ProbedPairs,
    at_start,
    distractor_pairs,
    instruction_pairs,
    marker_pairs,
    negation_pairs,
    padding_pairs,
    repetition_pairs,
    shuffle_pairs,
    stuffing_pairs,
)

STANCE_LABELS = ("SUPPORTS", "REFUTES")
BM25_RESPONSES = ("rises", "falls", "none", "either")


def _has_stance_labels(qrels: pd.DataFrame, marker: str | None) -> bool:
    return "label" in qrels and bool(qrels.label.isin(STANCE_LABELS).any())


def _has_marker(qrels: pd.DataFrame, marker: str | None) -> bool:
    return bool(marker)


# What a probe may need of a dataset, and how to tell that the dataset has it (from its qrels and its control's marker).
REQUIREMENTS: dict[str, Callable[[pd.DataFrame, str | None], bool]] = {
    "evidence labels (qrels labelled SUPPORTS / REFUTES, as CLIMATE-FEVER's)": _has_stance_labels,
    "a known-answer control's marker word": _has_marker,
}
EVIDENCE_LABELS, MARKER = REQUIREMENTS


@dataclass(frozen=True)
class Probe:
    name: str
    label: str
    reading: str
    bm25: str
    pairs: ProbedPairs | None
    needs: str | None = None
    overtake: bool = False

    def applies(self, qrels: pd.DataFrame, marker: str | None) -> bool:
        """Whether a dataset with ``qrels`` and the control's ``marker`` (None if not a control) has what the probe needs."""
        return self.needs is None or REQUIREMENTS[self.needs](qrels, marker)


REGISTRY: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe("stuffing", "query-word stuffing", "query words appended", "rises", stuffing_pairs, overtake=True),
        Probe("stuffing_start", "query-word stuffing, at the start", "query words prepended", "rises", at_start(stuffing_pairs), overtake=True),
        Probe("shuffle", "word-order shuffle", "word order shuffled", "none", shuffle_pairs),
        Probe("repetition", "repetition", "document repeated", "rises", repetition_pairs),
        Probe("padding", "neutral padding", "length doubled with neutral words", "falls", padding_pairs),
        Probe("distractor", "distractor sentence", "off-topic sentence appended", "falls", distractor_pairs),
        Probe("distractor_start", "distractor sentence, at the start", "off-topic sentence prepended", "falls", at_start(distractor_pairs)),
        Probe("instruction", "injected instruction", "relevance claim appended", "falls", instruction_pairs, overtake=True),
        Probe("negation", "negation", "relevant text negated", "none", negation_pairs),
        Probe("stance", "stance (SUPPORTS − REFUTES)", "SUPPORTS − REFUTES evidence", "either", None, needs=EVIDENCE_LABELS),
        Probe("marker", "marker insertion", "control's marker inserted", "falls", marker_pairs, needs=MARKER),
    )
}


def check_probes(names: Sequence[str], where: str = "probe.probes") -> None:
    """Raise ValueError unless every name in ``names`` is an entry of the registry; the message
    starts with ``where`` (the config key) and names the known probes."""
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise ValueError(f"{where}: {unknown} are not probes of rerank-audit; use some of {', '.join(REGISTRY)} (rerank_audit/probe/registry.py)")
