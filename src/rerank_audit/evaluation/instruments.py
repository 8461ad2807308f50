"""Two instruments, one answer: do the attributions (white box) and the shortcut probe (black box)
say the same about how much a method rewards query words?

White box: the attributions' *lexical excess*, the share of a method's positive attribution on
document words shared with the query minus the share of such words in the document
(``explain.faithfulness.lexical_shortcut`` and ``lexical_baseline``), mean over its explained
queries. Black box: its response to *query-word stuffing* (the query's words appended to a
document, ``probe.edits``), the mean score change in SDs of its candidates' scores. A method that
rewards query-word matching should show both; across methods the two should rank alike.
Spearman's ρ across the methods that have both, with its permutation p, says
whether they do; with few methods only a strong agreement can be told from chance.

On a known-answer control the same two instruments meet on the planted marker: white box,
the marker's share of the positive attribution on the document's words
(``controls.marker_attribution``), mean over the explained marker-carrying documents; black
box, the marker-insertion probe's mean score change (``probe.edits``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rerank_audit.evaluation.rank_correlation import spearman_test
from rerank_audit.evaluation.statistics import bootstrap_ci
from rerank_audit.methods import display_name

WHITE, BLACK = "lexical_excess", "stuffing"
COLUMNS = ["dataset", "budget", "method", "excess", "excess_low", "excess_high", "shortcut", "baseline", "stuffing", "stuffing_low", "stuffing_high", "response"]


def instruments_table(stats: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x budget x method with both: lexical excess (mean and CI; shortcut and baseline
    means) from ``stats`` (``statistics.compare_methods`` of the explainability measures) beside
    the stuffing probe's mean Δ, CI and response from ``tests`` (``probes.probe_tests``)."""
    keys = ["dataset", "budget", "method"]
    lexical = stats[stats.measure.isin([WHITE, "lexical_shortcut", "lexical_baseline"])]
    wide = lexical.pivot_table(index=keys, columns="measure", values=["mean", "ci_low", "ci_high"], aggfunc="first")
    if wide.empty or ("mean", WHITE) not in wide.columns:
        return pd.DataFrame(columns=COLUMNS)
    white = pd.DataFrame(
        {
            "excess": wide[("mean", WHITE)], "excess_low": wide[("ci_low", WHITE)], "excess_high": wide[("ci_high", WHITE)],
            "shortcut": wide.get(("mean", "lexical_shortcut"), np.nan), "baseline": wide.get(("mean", "lexical_baseline"), np.nan),
        }  # fmt: skip
    ).reset_index()
    black = tests[tests.probe == BLACK].rename(columns={"mean": "stuffing", "ci_low": "stuffing_low", "ci_high": "stuffing_high"})
    return white.merge(black[[*keys, "stuffing", "stuffing_low", "stuffing_high", "response"]], on=keys).dropna(subset=["excess", "stuffing"])[COLUMNS]


def agreement(white, black) -> tuple[float, float, int]:
    """(Spearman's ρ, its two-sided permutation p, methods) between the white-box and the
    black-box value of each method; NaN below 3 methods or when one does not vary. The p is
    ``rank_correlation``'s: exact (every order) up to 8 methods, Monte Carlo beyond; the t
    approximation is poor for so few points."""
    white, black = np.asarray(white, dtype=np.float64), np.asarray(black, dtype=np.float64)
    n = len(white)
    if n < 3 or len(np.unique(white)) < 2 or len(np.unique(black)) < 2:
        return float("nan"), float("nan"), n
    return (*spearman_test(white, black), n)


def instruments_markdown(table: pd.DataFrame, alpha: float = 0.05, digits: int = 2) -> str:
    """The section of probes.md: one row per method, then ρ and a sentence on whether the instruments agree."""
    if table.empty:
        return ""
    lines = [
        "## Two instruments: attributions (white box) against the stuffing probe (black box)",
        "",
        "Lexical excess: share of the method's positive attribution on document words shared with the query, minus "
        "the share of such words in its explained documents (> 0: it rewards query words beyond their share). "
        "Stuffing Δ: the score change when the query's words are appended to a document (the probe table's). "
        "Both: means over queries with 95% bootstrap CIs.",
        "",
        "| method | lexical shortcut vs baseline | lexical excess [CI] | stuffing Δ [CI] | response |",
        "|---|---:|---:|---:|---|",
    ]
    signed = f"+.{digits}f"
    for row in table.itertuples():
        lines.append(
            f"| {_name(row)} | {row.shortcut:.{digits}f} vs {row.baseline:.{digits}f} | "
            f"{_interval(row.excess, row.excess_low, row.excess_high, signed)} | "
            f"{_interval(row.stuffing, row.stuffing_low, row.stuffing_high, signed)} | {row.response} |"
        )
    return "\n".join([*lines, "", _verdict(table.excess, table.stuffing, alpha)]) + "\n"


def _name(row) -> str:
    """A table row's method, with its budget when trained."""
    return display_name(row.method) + ("" if row.budget == "0" else f", budget {row.budget}")


def _interval(value: float, low: float, high: float, spec: str) -> str:
    """``value [low, high]``, each in the format ``spec``."""
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def _verdict(white, black, alpha: float) -> str:
    """The sentence on whether the two instruments rank the methods alike."""
    rho, p, n = agreement(white, black)
    if np.isnan(rho):
        return f"Only {n} method(s) have both (or one instrument does not vary): no rank correlation."
    smallest = 2 / math.factorial(n)  # the same order on both, or the reverse: the rarest pairings
    if smallest >= alpha:
        return (
            f"Spearman's ρ = {rho:+.2f} across the {n} methods (permutation p = {p:.2g}); with {n} methods no "
            f"correlation can be told from chance (the smallest possible p is 2/{n}! = {smallest:.2g} ≥ α = {alpha:g})."
        )
    if p < alpha and rho > 0:
        return f"They agree: across the {n} methods, Spearman's ρ = {rho:+.2f} (permutation p = {p:.2g})."
    return f"They do not show agreement: across the {n} methods, Spearman's ρ = {rho:+.2f} (permutation p = {p:.2g}, α = {alpha:g})."


MARKER_COLUMNS = ["method", "budget", "documents", "share", "share_low", "share_high", "insertion", "insertion_low", "insertion_high", "response"]


def marker_instruments_table(pairs: pd.DataFrame, tests: pd.DataFrame, n_resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per method x budget with both: the marker's mean attribution share over its explained
    marker-carrying documents (``pairs``: ``controls.marker_attribution`` rows; documents
    without positive attribution left out) with a bootstrap CI, beside the marker-insertion
    probe's mean Δ, CI and response (``tests``: ``probes.probe_tests`` rows)."""
    rows = []
    for (method, budget), group in pairs.dropna(subset=["marker_share"]).groupby(["method", "budget"], sort=False):
        low, high = bootstrap_ci(group.marker_share.to_numpy(), n_resamples, seed=seed)
        rows.append({"method": method, "budget": budget, "documents": len(group), "share": group.marker_share.mean(), "share_low": low, "share_high": high})
    white = pd.DataFrame(rows, columns=MARKER_COLUMNS[:6])
    black = tests[tests.probe == "marker"].rename(columns={"mean": "insertion", "ci_low": "insertion_low", "ci_high": "insertion_high"})
    return white.merge(black[["method", "budget", "insertion", "insertion_low", "insertion_high", "response"]], on=["method", "budget"])[MARKER_COLUMNS]


def marker_instruments_markdown(table: pd.DataFrame, alpha: float = 0.05, digits: int = 2) -> str:
    """The control summary's section: per method the marker's attribution share beside its insertion response, then ρ."""
    if table.empty:
        return ""
    lines = [
        "## Two instruments on the marker: attributions (white box) against the marker-insertion probe (black box)",
        "",
        "Marker share: the marker's share of the positive attribution on the words of the explained marker-carrying "
        "documents (mean, 95% bootstrap CI). Insertion Δ: the score change when the marker is inserted into a "
        "non-relevant document (the probe's, in SDs of the method's candidate scores).",
        "",
        "| method | documents | marker share [CI] | insertion Δ [CI] | response |",
        "|---|---:|---:|---:|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {_name(row)} | {row.documents} | {_interval(row.share, row.share_low, row.share_high, f'.{digits}f')} | "
            f"{_interval(row.insertion, row.insertion_low, row.insertion_high, f'+.{digits}f')} | {row.response} |"
        )
    return "\n".join([*lines, "", _verdict(table.share, table.insertion, alpha)]) + "\n"

