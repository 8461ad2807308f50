"""probes.md: the shortcut probes of one dataset as tables and findings.

Generated from ``probes.probe_tests`` (each method's response against no response) and
``probes.compare_with_reference`` (each method's response against BM25's on the same
queries); nothing is typed by hand. A finding names a response, or a difference from BM25,
only where its test is significant after Holm; the overtake shares (stuffing and the other
probes that edit non-relevant documents) are given as description, labelled untested.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from rerank_audit.data.schemas import UNTRAINED_BUDGET
from rerank_audit.evaluation.summary import MISSING, budget_label, method_order
from rerank_audit.methods import display_name
from rerank_audit.probe.registry import REGISTRY

RISES, FALLS = "↑", "↓"  # a significant response (Holm)
MORE, LESS = "▲", "▼"  # Δ significantly above / below BM25's Δ (Holm)
REFERENCE = "bm25"


def _row_name(method: str, budget: str, budget_sizes: Mapping[str, int] | None) -> str:
    if budget == UNTRAINED_BUDGET:
        return display_name(method)
    return f"{display_name(method)}, {budget_label(budget, budget_sizes)}"


def _short_name(method: str, budget: str) -> str:
    """A method in a sentence: its display name, with "at budget b" when trained."""
    return display_name(method) if budget == UNTRAINED_BUDGET else f"{display_name(method)} at budget {budget}"


def _signed(value: float, digits: int) -> str:
    return MISSING if value is None or np.isnan(value) else f"{value:+.{digits}f}"


def _p(value: float) -> str:
    return MISSING if value is None or np.isnan(value) else f"{value:.2g}"


def _rows(tests: pd.DataFrame, methods: Sequence[str] | None) -> list[tuple[str, str]]:
    """(method, budget) in report order: budget "0" first (BM25, then the untrained methods), then each trained budget."""
    pairs = tests[["method", "budget"]].drop_duplicates()
    order = method_order(list(pairs.method), methods)
    budgets = sorted(dict.fromkeys(pairs.budget), key=lambda b: b != UNTRAINED_BUDGET)
    return sorted(zip(pairs.method, pairs.budget), key=lambda mb: (budgets.index(mb[1]), order.index(mb[0])))


def probes_markdown(
    tests: pd.DataFrame,
    against: pd.DataFrame,
    dataset: str,
    methods: Sequence[str] | None = None,
    budget_sizes: Mapping[str, int] | None = None,
    digits: int = 2,
) -> str:
    """The probes report of ``dataset``: a compact table (method x probe), the tests in full, and the findings.

    ``tests``: ``probe_tests`` rows; ``against``: ``compare_with_reference`` rows (may be
    empty); ``methods``: config order; ``budget_sizes``: training queries per budget label.
    """
    tests = tests[tests.dataset == dataset]
    against = against[against.dataset == dataset] if len(against) else against
    if tests.empty:
        return f"# Shortcut probes: {dataset}\n\nNo probe gave a result (every probed query's candidates scored the same).\n"
    probes = [p for p in REGISTRY if p in set(tests.probe)]
    rows = _rows(tests, methods)
    by_key = tests.set_index(["method", "budget", "probe"])
    versus = against.set_index(["method", "budget", "probe"]) if len(against) else None
    level = f"{float(tests.ci_level.iloc[0]):.0%}"
    alpha = float(tests.alpha.iloc[0])
    lines = [f"# Shortcut probes: {dataset}", ""]
    lines += [
        "Each probe edits the test queries' documents in one controlled way (or, stance, compares two kinds of relevant "
        "evidence) and records how each method's score moves: Δ = score(edited) − score(original), in SDs of the method's "
        "scores over the query's re-ranked head, mean over the probed documents of a query, then over queries. "
        f"{RISES} / {FALLS}: the score rises / falls significantly (paired t-test over queries, Holm over every probe × "
        f"method of one budget, p < {alpha:g}); {MORE} / {LESS}: Δ is significantly above / below BM25's Δ on the same "
        "queries (paired t-test of the per-query difference, Holm likewise). Untrained methods and BM25 are "
        "budget 0.",
        "",
    ]
    header = ["method", *[REGISTRY[p].label for p in probes]]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "|".join("---:" for _ in probes) + "|"]
    for method, budget in rows:
        cells = [_row_name(method, budget, budget_sizes)]
        for probe in probes:
            if (method, budget, probe) not in by_key.index:
                cells.append(MISSING)
                continue
            row = by_key.loc[(method, budget, probe)]
            mark = {"rises": RISES, "falls": FALLS}.get(row.response, "")
            if versus is not None and (method, budget, probe) in versus.index:
                mark += {"more": MORE, "less": LESS}.get(versus.loc[(method, budget, probe)].direction, "")
            cells.append(f"{_signed(row['mean'], digits)} {mark}".strip())
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"## The tests ({level} bootstrap CIs)", ""]
    overtaking = any(REGISTRY[p].overtake for p in probes)
    lines += [
        "| method | probe | queries | mean Δ [CI] | Holm p | response | Δ − BM25's Δ [CI] | Holm p |"
        + (" edited document outranks a relevant one: before → after |" if overtaking else ""),
        "|---|---|---:|---:|---:|---|---:|---:|" + ("---:|" if overtaking else ""),
    ]
    for method, budget in rows:
        for probe in probes:
            if (method, budget, probe) not in by_key.index:
                continue
            row = by_key.loc[(method, budget, probe)]
            cells = [
                _row_name(method, budget, budget_sizes), REGISTRY[probe].label, str(int(row.queries)),
                f"{_signed(row['mean'], digits)} [{_signed(row.ci_low, digits)}, {_signed(row.ci_high, digits)}]", _p(row.p_holm), row.response,
            ]  # fmt: skip
            if versus is not None and (method, budget, probe) in versus.index:
                ref = versus.loc[(method, budget, probe)]
                cells += [f"{_signed(ref.difference, digits)} [{_signed(ref.ci_low, digits)}, {_signed(ref.ci_high, digits)}]", _p(ref.p_holm)]
            else:
                cells += [MISSING, MISSING]
            if overtaking:
                has_shares = REGISTRY[probe].overtake and not np.isnan(row.overtake_after)
                cells.append(f"{row.overtake_before:.2f} → {row.overtake_after:.2f}" if has_shares else MISSING)
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Findings", ""]
    lines += [f"- {sentence}" for sentence in _findings(tests, against, rows, probes, budget_sizes, digits)]
    return "\n".join(lines) + "\n"


def _list(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _findings(tests, against, rows, probes, budget_sizes, digits) -> list[str]:
    by_key = tests.set_index(["method", "budget", "probe"])
    found = []
    for probe in probes:
        present = [(m, b) for m, b in rows if (m, b, probe) in by_key.index]
        named = {
            response: [
                f"{_short_name(m, b)} ({_signed(by_key.loc[(m, b, probe)]['mean'], digits)}, Holm p {_p(by_key.loc[(m, b, probe)].p_holm)})"
                for m, b in present
                if by_key.loc[(m, b, probe)].response == response
            ]
            for response in ("rises", "falls")
        }
        quiet = [_short_name(m, b) for m, b in present if by_key.loc[(m, b, probe)].response == "none"]
        not_rising = [_short_name(m, b) for m, b in present if by_key.loc[(m, b, probe)].response != "rises"]
        if probe == "marker":
            text = f"**Marker insertion** ({REGISTRY[probe].reading}) flags {_list(named['rises'])}: the score rises" if named["rises"] else "**Marker insertion** flags no method: no score rises significantly"
            text += f"; not flagged: {_list(not_rising)}." if not_rising else "."
        elif probe == "stance":
            parts = []
            if named["rises"]:
                parts.append(f"score SUPPORTS above REFUTES evidence of the same claim: {_list(named['rises'])}")
            if named["falls"]:
                parts.append(f"score REFUTES above SUPPORTS: {_list(named['falls'])}")
            text = f"**Stance**: {'; '.join(parts)}" if parts else "**Stance**: no method's SUPPORTS − REFUTES gap differs significantly from 0"
            text += f"; no significant gap: {_list(quiet)}." if quiet and parts else "."
        else:
            parts = [f"{'rises' if r == 'rises' else 'falls'} for {_list(named[r])}" for r in ("rises", "falls") if named[r]]
            text = f"**{REGISTRY[probe].label.capitalize()}** ({REGISTRY[probe].reading}): the score " + ("; ".join(parts) if parts else "moves significantly for no method")
            text += f"; no significant response: {_list(quiet)}." if quiet and parts else "."
        found.append(text)
        found += _reference_findings(against, probe, budget_sizes, digits)
    found += [sentence for probe in probes if REGISTRY[probe].overtake for sentence in _overtake_description(tests, rows, probe)]
    return found


def _reference_findings(against, probe, budget_sizes, digits) -> list[str]:
    """Against BM25: whose Δ is above or below BM25's (Holm), or that no one's differs."""
    if against is None or not len(against):
        return []
    rows = against[against.probe == probe]
    if rows.empty:
        return []
    said = {
        direction: [
            f"{_short_name(r.method, r.budget)} ({_signed(r.difference, digits)} spreads, Holm p {_p(r.p_holm)})"
            for r in rows.itertuples()
            if r.direction == direction
        ]
        for direction in ("more", "less")
    }
    if not said["more"] and not said["less"]:
        return [f"Against BM25: no method's Δ under {REGISTRY[probe].label} differs significantly from BM25's."]
    parts = [f"{'above' if d == 'more' else 'below'} BM25's for {_list(said[d])}" for d in ("more", "less") if said[d]]
    return [f"Against BM25, Δ under {REGISTRY[probe].label} is " + "; ".join(parts) + "."]


def _overtake_description(tests, rows, probe) -> list[str]:
    """The overtake shares of ``probe``, before and after its edit, as description (no test)."""
    edited = tests[(tests.probe == probe) & tests.overtake_after.notna()].set_index(["method", "budget"])
    if edited.empty:
        return []
    shares = [
        f"{_short_name(m, b)} {edited.loc[(m, b)].overtake_before:.2f} → {edited.loc[(m, b)].overtake_after:.2f}"
        for m, b in rows
        if (m, b) in edited.index
    ]
    return [
        f"Descriptive (untested), {REGISTRY[probe].label}: the share of (relevant, edited non-relevant) document pairs of a "
        "query in which the edited document scores higher, before → after the edit, mean over queries (random order: 0.50): "
        + "; ".join(shares) + "."
    ]
