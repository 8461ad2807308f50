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
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from rerank_audit.methods import display_name

WHITE, BLACK = "lexical_excess", "stuffing"
PAIRINGS = 50_000  # more than 8! = 40,320: exact up to 8 methods
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


def agreement(table: pd.DataFrame) -> tuple[float, float, int]:
    """(Spearman's ρ, its two-sided permutation p, methods) between lexical excess and the stuffing
    response; NaN below 3 methods. The p is exact (every pairing) up to 8 methods, else from
    ``PAIRINGS`` random pairings: the t approximation is poor for so few points."""
    n = len(table)
    if n < 3 or table.excess.nunique() < 2 or table.stuffing.nunique() < 2:
        return float("nan"), float("nan"), n
    x, y = (scipy_stats.rankdata(v) for v in (table.excess.to_numpy(), table.stuffing.to_numpy()))
    x, y = x - x.mean(), y - y.mean()
    scale = np.sqrt((x * x).sum() * (y * y).sum())

    def rho(ranks, axis=-1):
        return (ranks * y).sum(axis=axis) / scale

    result = scipy_stats.permutation_test((x,), rho, permutation_type="pairings", vectorized=True, n_resamples=PAIRINGS, random_state=0)
    return float(rho(x)), float(result.pvalue), n


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
    for row in table.itertuples():
        name = display_name(row.method) + ("" if row.budget == "0" else f", budget {row.budget}")
        lines.append(
            f"| {name} | {row.shortcut:.{digits}f} vs {row.baseline:.{digits}f} | {row.excess:+.{digits}f} "
            f"[{row.excess_low:+.{digits}f}, {row.excess_high:+.{digits}f}] | {row.stuffing:+.{digits}f} "
            f"[{row.stuffing_low:+.{digits}f}, {row.stuffing_high:+.{digits}f}] | {row.response} |"
        )
    rho, p, n = agreement(table)
    if np.isnan(rho):
        verdict = f"Only {n} method(s) have both (or one instrument does not vary): no rank correlation."
    elif p < alpha and rho > 0:
        verdict = f"They agree: across the {n} methods, Spearman's ρ = {rho:+.2f} (permutation p = {p:.2g})."
    else:
        verdict = f"They do not show agreement: across the {n} methods, Spearman's ρ = {rho:+.2f} (permutation p = {p:.2g}, α = {alpha:g})."
    return "\n".join([*lines, "", verdict]) + "\n"

