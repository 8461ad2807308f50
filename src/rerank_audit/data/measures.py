"""The explainability measures: one list that the explain stage, the schemas, the statistics,
the summary and the plots all read.

Each measure is a column of one table: ``faithfulness`` (per explained pair and K, from
the attributions: explain/faithfulness.py) or ``rationale`` (per pair, from the written
rationale: explain/rationale.py and ``rationale_comprehensiveness``). A measure with a
random baseline (random words; for simulatability, the attributions permuted) has a second
column ``<name>_random``; one tested against it says in which direction it is more faithful
than its baseline. The list names columns of the data model (``schemas``), so it lives in
``data/``, below every stage that reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCORE_DROP = "score drop, in SDs of\nthe method's candidate scores"
SHARE = "share, 0–1"


@dataclass(frozen=True)
class Measure:
    """``at_k``: one value per K (reported as ``<name>@<k>``). ``random``: has a ``<name>_random``
    baseline column. ``direction``: +1 / −1 when tested against that baseline (higher / lower is
    more faithful), 0 when not tested. ``by_end``: also reported per end of the re-ranked head
    (``<name>_top``, ``<name>_bottom``). ``header``: its summary column ({k}: the K), None: not
    a summary column; ``partner``: the value shown after "vs" there. ``unit``: its axis label."""

    name: str
    table: str
    unit: str
    at_k: bool = False
    random: bool = False
    direction: float = 0.0
    by_end: bool = False
    header: str | None = None
    partner: str | None = None


MEASURES = (
    Measure("comprehensiveness", "faithfulness", SCORE_DROP, at_k=True, random=True, direction=1.0, header="compr.@{k} vs random (↑)"),
    Measure("sufficiency", "faithfulness", SCORE_DROP, at_k=True, random=True, direction=-1.0, header="suff.@{k} vs random (↓)"),
    Measure("deletion_auc", "faithfulness", SCORE_DROP, random=True),
    Measure("lexical_shortcut", "faithfulness", SHARE, header="lexical shortcut vs baseline", partner="lexical_baseline"),
    Measure("lexical_baseline", "faithfulness", SHARE),
    Measure("lexical_excess", "faithfulness", "shortcut − baseline, −1–1", header="lexical excess"),
    Measure("marker_comprehensiveness", "faithfulness", SCORE_DROP, random=True),  # known-answer controls only
    # Counterfactual simulatability (explain/simulatability.py): random = the attributions permuted within the pair.
    Measure("simulatability", "faithfulness", "Spearman ρ of predicted and\nmeasured score changes, −1–1", random=True, direction=1.0, header="simulatability vs permuted (↑)"),
    Measure("sign_agreement", "faithfulness", SHARE, random=True, direction=1.0, header="sign agreement vs permuted (↑)"),
    Measure("rationale_comprehensiveness", "rationale", SCORE_DROP, random=True, direction=1.0, header="rationale compr. vs random (↑)"),
    Measure("keyword_coverage", "rationale", SHARE, header="keyword coverage (↑)"),
    Measure("verdict_agreement", "rationale", SHARE, by_end=True, header="verdict agreement (↑)"),
    Measure("unsupported_rate", "rationale", SHARE, header="unsupported words (↓)"),
)


def columns(table: str, at_k: bool | None = None) -> list[str]:
    """The value columns of ``table`` ("faithfulness" | "rationale"), each measure followed by its
    random baseline; ``at_k`` True / False: only the measures reported per K / per pair."""
    chosen = [m for m in MEASURES if m.table == table and (at_k is None or m.at_k == at_k)]
    return [name for m in chosen for name in ([m.name, f"{m.name}_random"] if m.random else [m.name])]


def summary_columns() -> list[tuple[str, str, str | None]]:
    """(header, measure, measure shown after "vs" or None) of the summary's explainability
    columns, in ``MEASURES`` order; "{k}" stands for the K."""
    found = []
    for m in MEASURES:
        if m.header is None:
            continue
        name = m.name + ("@{k}" if m.at_k else "")
        found.append((m.header, name, m.partner or (f"{m.name}_random" + ("@{k}" if m.at_k else "") if m.random else None)))
        if m.by_end:
            found.append((m.header.split(" (")[0] + " top vs bottom", f"{m.name}_top", f"{m.name}_bottom"))
    return found


def measure_of(reported: str) -> Measure | None:
    """The measure a reported name belongs to ("comprehensiveness_random@5" -> comprehensiveness), or None."""
    stem = re.sub(r"@\d+$", "", reported)
    stem = re.sub(r"_(random|top|bottom)$", "", stem)
    return next((m for m in MEASURES if m.name == stem), None)
